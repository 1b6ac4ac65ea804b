// What every web UI script shares: Debian's headless Chromium through
// playwright-core (CHROMIUM overrides /usr/bin/chromium; playwright-core
// downloads no browser of its own), one page whose console is recorded, and
// the exit protocol: status 0 on success; on failure the reason, the page's
// console and its HTML go to stderr.
//
//   await runInBrowser("web UI", async (page, timeout) => { ... });
import { chromium } from "playwright-core";

/// How long each step may wait for the page, in ms.
export const timeout = 15000;

/// Runs `steps(page, timeout)` in a fresh headless page, closes the browser
/// and exits the process with the outcome; `name` prefixes the failure.
export async function runInBrowser(name, steps) {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    // Containers often run as root without a user namespace sandbox.
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
  const console_ = [];
  let ok = false;
  const page = await browser.newPage();
  page.on("console", (m) => console_.push(`${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => console_.push(`pageerror: ${e.message}`));
  try {
    await steps(page, timeout, console_);
    ok = true;
  } catch (e) {
    console.error(`${name} test failed: ${e.message}`);
    console.error("console:\n" + console_.join("\n"));
    console.error("page:\n" + (await page.content().catch(() => "?")));
  } finally {
    await browser.close();
  }
  process.exit(ok ? 0 : 1);
}
