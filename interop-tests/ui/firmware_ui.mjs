// Drives the web UI's firmware part in headless Chromium (run by
// interop-tests/tests/web_ui_demo.rs against four demo clients): uploads two
// packages on the firmware page and sees them listed; updates device A to
// the first through its page and sees the job's phases go by live, its
// success and A's new Firmware Version (/3/0/3); updates device D, whose
// update hook fails, and sees the failure and its reason; creates a campaign of the
// second over A and B (select all, C and D unticked, waves "1", started paused), resumes
// it and sees it complete with both devices succeeded; creates one over
// device C, which the test froze (SIGSTOP) so that its update stays in flight,
// pauses, resumes and cancels it; deletes the first package.
//
//   node firmware_ui.mjs BASE_URL EP_A EP_B EP_C EP_D FILE1 SHA1 VERSION_AFTER1 FILE2 SHA2
//
// SHAn: the package's SHA-256 (hex); VERSION_AFTER1: what A reports as /3/0/3
// once it installed FILE1. Prints "ok: ..." lines with the ids it saw.
// Browser and exit status: browser.mjs.
import { runInBrowser } from "./browser.mjs";

const [base, epA, epB, epC, epD, file1, sha1, after1, file2, sha2] = process.argv.slice(2);
if (!sha2) {
  console.error("usage: node firmware_ui.mjs BASE_URL EP_A EP_B EP_C EP_D FILE1 SHA1 VERSION_AFTER1 FILE2 SHA2");
  process.exit(2);
}
// An update or a campaign takes longer than one page step.
const updateTimeout = 60000;
const short = (sha) => sha.slice(0, 12) + "…";

await runInBrowser("firmware UI", async (page, timeout) => {
  const statusSays = async (text) => page.locator("#status", { hasText: text }).waitFor({ timeout });
  await page.goto(base, { timeout });
  for (const ep of [epA, epB, epC, epD]) await page.locator(`#clients li[data-ep="${ep}"]`).waitFor({ timeout });
  await page.locator("#live", { hasText: "live" }).waitFor({ timeout });

  // Packages: upload two, both listed with size and shortened SHA-256.
  await page.locator("#firmware-link").click();
  const upload = async (file, version, sha) => {
    await page.locator("#fw-file").setInputFiles(file);
    await page.locator("#fw-name").fill("demo");
    await page.locator("#fw-version").fill(version);
    await page.locator("#fw-upload").click();
    await statusSays(`SHA-256 ${short(sha)}`);
    const row = page.locator("#fw-package-list tr[data-package]", { hasText: short(sha) });
    await row.waitFor({ timeout });
    const text = await row.innerText();
    if (!text.includes(version) || !/\d+(\.\d)? (B|KiB)/.test(text)) throw new Error(`package row: ${text}`);
    return row.getAttribute("data-package");
  };
  const pkg1 = await upload(file1, "1.0", sha1);
  const pkg2 = await upload(file2, "2.0", sha2);
  console.log(`ok: packages ${pkg1} ${pkg2}`);

  // One device: A's page, package 1 by CoAP pull; the job's phases as shown.
  await page.locator(`#clients li[data-ep="${epA}"]`).click();
  await page.locator("#fw-update #fw-start").waitFor({ timeout });
  await page.locator("#fw-package").selectOption(pkg1);
  await page.locator("#fw-delivery").selectOption("coap");
  await page.evaluate(() => {
    window.seenPhases = [];
    new MutationObserver((records) => {
      for (const r of records) if (r.target.id === "fw-job") window.seenPhases.push(r.target.dataset.status);
    }).observe(document.querySelector("#detail"), { subtree: true, attributes: true, attributeFilter: ["data-status"] });
  });
  await page.locator("#fw-start").click();
  await page.locator('#fw-job[data-status="succeeded"]').waitFor({ timeout: updateTimeout });
  await page.locator("#fw-outcome", { hasText: "succeeded" }).waitFor({ timeout });
  const done = await page.locator("#fw-job ol.phases li.done").count();
  if (done !== 5) throw new Error(`${done} phases shown done, expected 5`);
  const phases = [...new Set(await page.evaluate(() => window.seenPhases))];
  if (phases[phases.length - 1] !== "succeeded" || !phases.includes("updating")) throw new Error(`phases seen: ${phases}`);
  // The page reads /3/0/3 once the job succeeded.
  await page.locator('[id="v-/3/0/3"]', { hasText: after1 }).waitFor({ timeout });
  const job = await page.locator("#fw-job").getAttribute("data-job");
  const shot = async (suffix) => {
    if (!process.env.SCREENSHOT) return;
    await page.setViewportSize({ width: 1280, height: 2000 });
    await page.screenshot({ path: process.env.SCREENSHOT.replace(/\.png$/, "") + suffix + ".png" });
    await page.setViewportSize({ width: 1280, height: 720 });
  };
  await shot("-job");
  console.log(`ok: job ${job} succeeded, phases ${phases.join(",")}, /3/0/3 = ${after1}`);

  // D's update fails on the device: the page says so and why.
  await page.locator(`#clients li[data-ep="${epD}"]`).click();
  await page.locator("h2", { hasText: epD }).waitFor({ timeout });
  await page.locator("#fw-package").selectOption(pkg1);
  await page.locator("#fw-delivery").selectOption("push");
  await page.locator("#fw-start").click();
  await page.locator('#fw-job[data-status="failed"]').waitFor({ timeout: updateTimeout });
  const reason = await page.locator("#fw-outcome").innerText();
  if (!reason.startsWith("failed: ") || !reason.includes("Update Result 8")) throw new Error(`outcome: ${reason}`);
  if ((await page.locator("#fw-job ol.phases li.fail").count()) !== 1) throw new Error("no phase marked failed");
  const failedJob = await page.locator("#fw-job").getAttribute("data-job");
  console.log(`ok: job ${failedJob} ${reason}`);

  // A campaign of package 2 over both devices, created paused, resumed.
  await page.locator("#firmware-link").click();
  await page.locator("#fw-c-create").waitFor({ timeout });
  await page.locator("#fw-c-name").fill("rollout");
  await page.locator("#fw-c-package").selectOption(pkg2);
  await page.locator("#fw-c-delivery").selectOption("push");
  const target = (ep) => page.locator(`#fw-c-targets input.target[value="${ep}"]`);
  await page.locator("#fw-c-all").check();
  const picked = await page.locator("#fw-c-targets input.target:checked").count();
  if (picked !== 4) throw new Error(`select all ticked ${picked} targets`);
  await target(epC).uncheck();
  await target(epD).uncheck();
  await page.locator("#fw-c-waves").fill("1");
  await page.locator("#fw-c-max").fill("1");
  await page.locator("#fw-c-threshold").fill("0");
  await page.locator("#fw-c-paused").check();
  await page.locator("#fw-c-create").click();
  const detail = page.locator("#fw-campaign");
  await page.locator('#fw-campaign[data-status="paused"]').waitFor({ timeout });
  const campaign = await detail.getAttribute("data-campaign");
  const row = page.locator(`#fw-campaign-list tr[data-campaign="${campaign}"]`);
  await row.locator('td.cstatus[data-status="paused"]').waitFor({ timeout });
  await row.locator("td.counts", { hasText: "2 pending" }).waitFor({ timeout });
  for (const ep of [epA, epB]) {
    await detail.locator(`tr[data-ep="${ep}"] td.dstatus[data-status="pending"]`).waitFor({ timeout });
  }
  if (!(await detail.locator('button[data-op="pause"]').isDisabled())) throw new Error("Pause enabled while paused");
  await detail.locator('button[data-op="resume"]').click();
  await statusSays("resume rollout: running");
  await page.locator('#fw-campaign[data-status="completed"]').waitFor({ timeout: updateTimeout });
  for (const ep of [epA, epB]) {
    await detail.locator(`tr[data-ep="${ep}"] td.dstatus[data-status="succeeded"]`).waitFor({ timeout });
  }
  await row.locator('td.cstatus[data-status="completed"]').waitFor({ timeout });
  await row.locator("td.counts", { hasText: "2 succeeded" }).waitFor({ timeout });
  for (const op of ["pause", "resume", "cancel"]) {
    if (!(await detail.locator(`button[data-op="${op}"]`).isDisabled())) throw new Error(`${op} enabled once completed`);
  }
  await shot("-campaign");
  console.log(`ok: campaign ${campaign} completed, both devices succeeded`);

  // Device C never answers: its update stays in flight while the
  // campaign is paused, resumed and cancelled.
  const button = (op) => detail.locator(`button[data-op="${op}"]`);
  const enabled = async (want) => {
    for (const op of ["pause", "resume", "cancel"]) {
      if ((await button(op).isEnabled()) !== want.includes(op)) throw new Error(`${op} ${want.includes(op) ? "disabled" : "enabled"}`);
    }
  };
  await page.locator("#fw-c-name").fill("frozen");
  await page.locator("#fw-c-all").uncheck();
  await target(epC).check();
  await page.locator("#fw-c-paused").uncheck();
  await page.locator("#fw-c-create").click();
  await page.locator('#fw-campaign[data-status="running"]').waitFor({ timeout });
  const frozen = await detail.getAttribute("data-campaign");
  if (frozen === campaign) throw new Error("the detail still shows the first campaign");
  await detail.locator(`tr[data-ep="${epC}"] td.dstatus[data-status="delivering"]`).waitFor({ timeout });
  await enabled(["pause", "cancel"]);
  await button("pause").click();
  await page.locator('#fw-campaign[data-status="paused"]').waitFor({ timeout });
  await statusSays("pause frozen: paused");
  await enabled(["resume", "cancel"]);
  await button("resume").click();
  await page.locator('#fw-campaign[data-status="running"]').waitFor({ timeout });
  await statusSays("resume frozen: running");
  page.once("dialog", (d) => d.accept());
  await button("cancel").click();
  await page.locator('#fw-campaign[data-status="cancelled"]').waitFor({ timeout });
  await enabled([]);
  await page.locator(`#fw-campaign-list tr[data-campaign="${frozen}"] td.cstatus[data-status="cancelled"]`).waitFor({ timeout });
  console.log(`ok: campaign ${frozen} paused, resumed, cancelled`);

  // Delete package 1.
  page.once("dialog", (d) => d.accept());
  await page.locator(`#fw-package-list tr[data-package="${pkg1}"] button[data-op="delete-package"]`).click();
  await page.locator(`#fw-package-list tr[data-package="${pkg1}"]`).waitFor({ state: "detached", timeout });
  await page.locator(`#fw-package-list tr[data-package="${pkg2}"]`).waitFor({ timeout });
  console.log(`ok: package ${pkg1} deleted`);
  // SCREENSHOT=/tmp/fw.png keeps pictures of the page, to look at.
  await shot("");
});
