/** Saves text as a file the browser downloads (a Blob URL on a temporary link; no navigation). */
export function downloadText(fileName: string, text: string, mimeType: string): void {
  const url = URL.createObjectURL(new Blob([text], { type: mimeType }));
  const a = document.createElement('a');
  a.href = url;
  a.download = fileName;
  a.rel = 'noopener';
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/** A file name piece from user text: letters, digits, dot, dash and underscore only. */
export function safeFileName(text: string): string {
  return text.trim().replace(/[^\w.-]+/g, '_').replace(/^[._]+/, '').slice(0, 60) || 'servelab';
}
