/** The simulated fleet's Web Worker: thin, it exposes workers/fleet-host.ts's FleetApi with comlink. */
import * as Comlink from 'comlink';
import { fleetApi } from './fleet-host.ts';

Comlink.expose(fleetApi);
