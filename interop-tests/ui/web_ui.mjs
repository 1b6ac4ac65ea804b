// Drives the LwM2M server's web UI in headless Chromium: open the page,
// click the registered client, Read /3/0 and see the manufacturer, then
// Write /1/0/1 (Lifetime) through the prompt and see the value read back.
//
//   node web_ui.mjs BASE_URL ENDPOINT EXPECTED_MANUFACTURER
//
// Browser and exit status: browser.mjs.
import { runInBrowser } from "./browser.mjs";

const [base, endpoint, manufacturer] = process.argv.slice(2);
if (!base || !endpoint || !manufacturer) {
  console.error("usage: node web_ui.mjs BASE_URL ENDPOINT EXPECTED_MANUFACTURER");
  process.exit(2);
}
await runInBrowser("web UI", async (page, timeout, console_) => {
  await page.goto(base, { timeout });
  // The client list comes from /api/clients; the live badge from SSE.
  const client = page.locator(`#clients li[data-ep="${endpoint}"]`);
  await client.waitFor({ timeout });
  await page.locator("#live", { hasText: "live" }).waitFor({ timeout });
  await client.click();
  // The object tree names objects from the models.
  await page.locator('.obj[data-object="3"] h3', { hasText: "Device" }).waitFor({ timeout });
  await page.locator('button[data-op="read"][data-path="/3/0"]').click();
  const cell = page.locator('[id="v-/3/0/0"]');
  await cell.filter({ hasText: manufacturer }).waitFor({ timeout });
  const status = await page.locator("#status").textContent();
  if (!status.includes("CONTENT")) throw new Error(`status line says ${JSON.stringify(status)}`);
  // Write the Server object's Lifetime through the prompt; the UI reads it back.
  page.once("dialog", (d) => d.accept("120"));
  await page.locator('tr[data-path="/1/0/1"] button[data-op="write"]').click();
  await page.locator('[id="v-/1/0/1"]').filter({ hasText: "120" }).waitFor({ timeout });
  console.log(`ok: ${endpoint} /3/0/0 = ${await cell.textContent()}, /1/0/1 written`);
});
