// Drives the gateway's inbox page in Debian's headless chromium with playwright-core (no browser download).
// Usage: node browser.mjs PAGE_URL EXPECTED_TEXT SCREENSHOT_PATH
// Prints one JSON line per step; waits for a line on stdin ("emitted") between "ready" and "rendered".
import { createInterface } from "node:readline";
import { drivePage, out } from "./headless.mjs";

const [pageUrl, expectedText, screenshotPath] = process.argv.slice(2);
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

await drivePage({ width: 800, height: 600 }, async (page, consoleErrors) => {
  await page.goto(pageUrl);
  await page.waitForSelector('#status[data-state="connected"]', { timeout: 15000 });
  // The badge is set by the unread_count the server sends after its replay.
  const badge = async () => Number(await page.getAttribute("#badge", "data-count"));
  out({ step: "ready", badge: await badge() });

  await lines.next(); // the test has emitted its notification
  const item = page.locator("#list li", { hasText: expectedText });
  await item.waitFor({ timeout: 15000 });
  await page.waitForFunction(() => document.querySelector("#badge").dataset.count === "1", null, { timeout: 15000 });
  out({
    step: "rendered",
    text: await item.locator(".text").textContent(),
    elementsInText: await item.locator(".text").evaluate((el) => el.children.length),
    xss: await page.evaluate(() => window.__xss ?? null),
    className: await item.getAttribute("class"),
    badge: await badge(),
  });

  await item.click();
  await page.waitForFunction(() => document.querySelector("#badge").dataset.count === "0", null, { timeout: 15000 });
  await page.waitForSelector("#list li.read", { timeout: 15000 });
  out({ step: "clicked", badge: await badge(), className: await item.getAttribute("class") });

  await page.screenshot({ path: screenshotPath, fullPage: true });
  out({ step: "screenshot", path: screenshotPath, consoleErrors });
});
