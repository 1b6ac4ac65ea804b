// Drives the web UI's bootstrap configuration editor in headless Chromium:
// open it, create a configuration for ENDPOINT (lifetime 77) and one for
// ENDPOINT-tmp, see both listed, refuse broken JSON, delete ENDPOINT-tmp.
// The Rust test then checks the server's state through the API.
//
//   node bootstrap_ui.mjs BASE_URL ENDPOINT
//
// Browser and exit status: browser.mjs.
import { runInBrowser } from "./browser.mjs";

const [base, endpoint] = process.argv.slice(2);
if (!base || !endpoint) {
  console.error("usage: node bootstrap_ui.mjs BASE_URL ENDPOINT");
  process.exit(2);
}
await runInBrowser("bootstrap UI", async (page, timeout, console_) => {
  const config = (lifetime) => JSON.stringify({
    security: [{ id: 1, uri: "coap://127.0.0.1:5683", short_server_id: 101 }],
    servers: [{ id: 0, short_server_id: 101, lifetime }],
  });
  async function save(ep, json) {
    await page.locator("#bs-ep").fill(ep);
    await page.locator("#bs-json").fill(json);
    await page.locator("#bs-save").click();
  }
  await page.goto(base, { timeout });
  await page.locator("#bootstrap-link").click();
  await page.locator("#detail h2", { hasText: "Bootstrap configurations" }).waitFor({ timeout });
  await save(endpoint, config(77));
  await page.locator(`button[data-bs-ep="${endpoint}"]`).waitFor({ timeout });
  await page.locator("#status", { hasText: "saved" }).waitFor({ timeout });
  // The editor shows what the server stored: defaults filled in.
  const stored = JSON.parse(await page.locator("#bs-json").inputValue());
  if (JSON.stringify(stored.delete) !== JSON.stringify(["/0", "/1"])) throw new Error(`stored ${JSON.stringify(stored)}`);
  await save(`${endpoint}-tmp`, config(5));
  await page.locator(`button[data-bs-ep="${endpoint}-tmp"]`).waitFor({ timeout });
  // Broken JSON and an invalid configuration are refused with a message.
  await page.locator("#bs-json").fill("{");
  await page.locator("#bs-save").click();
  await page.locator("#status.err", { hasText: "JSON" }).waitFor({ timeout });
  await save(`${endpoint}-bad`, JSON.stringify({ servers: [{ id: 0, short_server_id: 9 }] }));
  await page.locator("#status.err").waitFor({ timeout });
  // Pick the temporary one from the list and delete it.
  await page.locator(`button[data-bs-ep="${endpoint}-tmp"]`).click();
  page.once("dialog", (d) => d.accept());
  await page.locator("#bs-delete").click();
  await page.locator("#status", { hasText: "deleted" }).waitFor({ timeout });
  if (await page.locator(`button[data-bs-ep="${endpoint}-tmp"]`).count() !== 0) throw new Error("deleted one still listed");
  await page.locator(`button[data-bs-ep="${endpoint}"]`).click();
  const shown = JSON.parse(await page.locator("#bs-json").inputValue());
  if (shown.servers[0].lifetime !== 77) throw new Error(`shown ${JSON.stringify(shown)}`);
  console.log(`ok: bootstrap editor saved ${endpoint}, deleted ${endpoint}-tmp`);
});
