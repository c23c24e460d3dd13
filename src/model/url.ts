/**
 * Model URLs a user types: only http(s), no credentials, Hugging Face "blob" pages turned into
 * "resolve" downloads. Returns a clear reason when the URL cannot be used.
 */
export type UrlCheck = { ok: true; url: string } | { ok: false; reason: string };

export function checkModelUrl(input: string, base?: string): UrlCheck {
  const text = input.trim();
  if (text === '') return { ok: false, reason: 'the URL is empty' };
  let url: URL;
  try {
    url = new URL(text, base);
  } catch {
    return { ok: false, reason: `"${text}" is not a URL` };
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    return { ok: false, reason: `only http(s) URLs can be downloaded, not ${url.protocol}` };
  }
  if (url.username || url.password) return { ok: false, reason: 'URLs with a user name or password are not accepted' };
  if (url.hostname === 'huggingface.co') {
    // https://huggingface.co/ORG/REPO/blob/main/FILE is a web page; /resolve/ is the file.
    url.pathname = url.pathname.replace(/^\/([^/]+)\/([^/]+)\/blob\//, '/$1/$2/resolve/');
  }
  return { ok: true, url: url.toString() };
}
