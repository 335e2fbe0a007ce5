// Node.js global fetch (undici) with a concurrency limit: N workers take URLs
// from a shared list, JSON.parse each body, and write one JSON Lines record
// per URL, in the same shape as fetchd's records.
//
// usage: node node_fetch.mjs URLS_FILE CONCURRENCY OUT_FILE
import fs from 'node:fs';

const [urlsFile, concArg, outFile] = process.argv.slice(2);
const urls = fs.readFileSync(urlsFile, 'utf8').split('\n').filter(Boolean);
const concurrency = Number(concArg);
const out = fs.createWriteStream(outFile);
let next = 0;
let ok = 0;

async function worker() {
  while (next < urls.length) {
    const url = urls[next++];
    const t0 = performance.now();
    const at = new Date().toISOString();
    let rec;
    try {
      const resp = await fetch(url);
      const body = await resp.text();
      rec = {url, ok: resp.status === 200, status: resp.status, fetched_at: at,
             duration_ms: performance.now() - t0, bytes: body.length, data: JSON.parse(body)};
      if (rec.ok) ok++;
    } catch (e) {
      rec = {url, ok: false, error: String(e)};
    }
    if (!out.write(JSON.stringify(rec) + '\n')) {
      await new Promise((resolve) => out.once('drain', resolve));
    }
  }
}

await Promise.all(Array.from({length: concurrency}, worker));
await new Promise((resolve) => out.end(resolve));
process.exit(ok === urls.length ? 0 : 1);
