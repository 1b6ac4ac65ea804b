// Drives the web UI's composite panel in headless Chromium (run by
// lwm2m-server/tests/web_ui.rs): tick /3/0/0 and /3/0/1 of the registered client,
// Read-Composite and see the manufacturer and model; Write-Composite /1/0/1
// through the prompt and see the value read back; Observe-Composite /3/0/9,
// print "observing" so the test makes the device notify, see the notified
// value, cancel.
//
//   node composite_ui.mjs BASE_URL ENDPOINT MANUFACTURER MODEL NOTIFIED
//
// Browser and exit status: browser.mjs.
import { runInBrowser } from "./browser.mjs";

const [base, endpoint, manufacturer, model, notified] = process.argv.slice(2);
if (!notified) {
  console.error("usage: node composite_ui.mjs BASE_URL ENDPOINT MANUFACTURER MODEL NOTIFIED");
  process.exit(2);
}
await runInBrowser("composite UI", async (page, timeout, console_) => {
  const statusSays = async (text) => page.locator("#status", { hasText: text }).waitFor({ timeout });
  const cell = (p) => page.locator(`[id="v-${p}"]`);
  const pick = (p) => page.locator(`input.pick[data-path="${p}"]`);
  const op = (name) => page.locator(`#composite button[data-op="${name}"]`);
  await page.goto(base, { timeout });
  const client = page.locator(`#clients li[data-ep="${endpoint}"]`);
  await client.waitFor({ timeout });
  await page.locator("#live", { hasText: "live" }).waitFor({ timeout });
  await client.click();
  await page.locator('.obj[data-object="3"] h3', { hasText: "Device" }).waitFor({ timeout });

  // Read-Composite of two ticked resources.
  await pick("/3/0/0").check();
  await pick("/3/0/1").check();
  await page.locator("#composite-paths", { hasText: "/3/0/0, /3/0/1" }).waitFor({ timeout });
  await op("read-composite").click();
  await page.locator('#composite-result li[data-path="/3/0/0"]', { hasText: manufacturer }).waitFor({ timeout });
  await page.locator('#composite-result li[data-path="/3/0/1"]', { hasText: model }).waitFor({ timeout });
  await cell("/3/0/0").filter({ hasText: manufacturer }).waitFor({ timeout });
  await cell("/3/0/1").filter({ hasText: model }).waitFor({ timeout });
  await statusSays("read-composite /3/0/0,/3/0/1: CONTENT 2.05");
  console.log(`ok: read-composite ${endpoint} /3/0/0 = ${await cell("/3/0/0").textContent()}, /3/0/1 = ${await cell("/3/0/1").textContent()}`);

  // Write-Composite: Lifetime through the prompt, read back by the UI.
  await op("clear-picked").click();
  await pick("/1/0/1").check();
  page.once("dialog", (d) => {
    if (!d.defaultValue().includes('"/1/0/1"')) console_.push(`prompt prefill: ${d.defaultValue()}`);
    d.accept('{"/1/0/1": 77}');
  });
  await op("write-composite").click();
  await cell("/1/0/1").filter({ hasText: "77" }).waitFor({ timeout });
  await statusSays("read-composite /1/0/1: CONTENT 2.05");
  console.log("ok: write-composite /1/0/1 = 77");

  // Observe-Composite: live updates from a notification the test triggers.
  await op("clear-picked").click();
  await pick("/3/0/9").check();
  await op("observe-composite").click();
  await page.locator('#composite button[data-op="observe-composite"].on').waitFor({ timeout });
  await statusSays("observe-composite /3/0/9: CONTENT 2.05");
  console.log("observing");
  await cell("/3/0/9").filter({ hasText: notified }).waitFor({ timeout });
  await page.locator('#composite-result li[data-path="/3/0/9"]', { hasText: notified }).waitFor({ timeout });
  console.log(`ok: notified /3/0/9 = ${notified}`);
  await op("observe-composite").click();
  await statusSays("cancel observe-composite /3/0/9: CONTENT 2.05");
  await page.locator('#composite button[data-op="observe-composite"]:not(.on)').waitFor({ timeout });
  console.log("ok: cancelled");
  // SCREENSHOT=/tmp/ui.png keeps a picture of the page, to look at.
  if (process.env.SCREENSHOT) await page.screenshot({ path: process.env.SCREENSHOT, fullPage: true });
});
