#!/usr/bin/env node
// Send a signed webhook delivery to cgm-hub (Node 20, no npm packages).
//
//   node examples/webhook_sign.mjs --url http://127.0.0.1:5001 --user demo-alice \
//       --secret "$WEBHOOK_SIGNING_SECRET" --file examples/webhook_payload.json
//
// The payload file is sent byte for byte as read (no re-serialization), because the
// signature covers the exact bytes of the body. --secret defaults to the
// WEBHOOK_SIGNING_SECRET environment variable (a secret on the command line is
// visible to other users of the machine in `ps`).
//
// The server checks (src/sources/webhook/signature.rs):
//   X-Webhook-Timestamp: <unix seconds, plain integer, within 300 s of its clock>
//   X-Webhook-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>
//
// Prints the HTTP status and the response body to stdout. Exit codes: 0 on a 2xx
// (202: stored in the inbox, processed right after), 1 otherwise (including a
// network error or an unreadable file), 2 bad command line.

import { createHmac } from "node:crypto";
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";

/** The X-Webhook-Signature header value for `body` (a Buffer) sent with X-Webhook-Timestamp `timestamp`. */
export function sign(secret, timestamp, body) {
  const mac = createHmac("sha256", Buffer.from(secret, "utf8"));
  mac.update(`${timestamp}.`, "utf8");
  mac.update(body);
  return `sha256=${mac.digest("hex")}`;
}

/** POSTs a signed delivery; resolves to { status, text }. */
export async function deliver(url, secret, body) {
  const timestamp = Math.floor(Date.now() / 1000);
  const response = await fetch(url, {
    method: "POST",
    headers: {
      "Content-Type": "application/json",
      "X-Webhook-Timestamp": String(timestamp),
      "X-Webhook-Signature": sign(secret, timestamp, body),
    },
    body,
    signal: AbortSignal.timeout(30_000),
  });
  return { status: response.status, text: await response.text() };
}

async function main() {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        url: { type: "string" },
        user: { type: "string" },
        secret: { type: "string", default: process.env.WEBHOOK_SIGNING_SECRET ?? "" },
        file: { type: "string" },
      },
    }));
  } catch (e) {
    console.error(e.message);
    return 2;
  }
  const missing = ["url", "user", "secret", "file"].filter((name) => !values[name]);
  if (missing.length > 0) {
    console.error(`usage: node webhook_sign.mjs --url BASE --user USER --secret SECRET --file PAYLOAD.json`);
    console.error(`missing: ${missing.map((name) => `--${name}`).join(", ")}`);
    return 2;
  }

  let body;
  try {
    body = readFileSync(values.file);
  } catch (e) {
    console.error(`cannot read ${values.file}: ${e.message}`);
    return 1;
  }
  const url = `${values.url.replace(/\/+$/, "")}/api/bg/${encodeURIComponent(values.user)}/webhook`;
  let result;
  try {
    result = await deliver(url, values.secret, body);
  } catch (e) {
    console.error(`cannot reach ${url}: ${e.cause?.message ?? e.message}`);
    return 1;
  }
  console.log(result.status);
  console.log(result.text);
  return result.status >= 200 && result.status < 300 ? 0 : 1;
}

// Run only as a script, so that `sign` can be imported by tests and docs.
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = await main();
}
