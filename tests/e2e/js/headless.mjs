// What the headless-Chromium drivers share: Debian's chromium through playwright-core (no browser download), a
// page that collects console errors, one JSON line per step on stdout, and exit code 1 with the error on failure.
import { chromium } from "playwright-core";

export const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

// Opens a page of `viewport` size, runs `steps(page, consoleErrors)`, closes the browser and exits the process.
export async function drivePage(viewport, steps) {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH || "/usr/bin/chromium",
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  let code = 0;
  try {
    const page = await browser.newPage({ viewport });
    const consoleErrors = [];
    page.on("console", (msg) => { if (msg.type() === "error") consoleErrors.push(msg.text()); });
    page.on("pageerror", (err) => consoleErrors.push(String(err)));
    await steps(page, consoleErrors);
  } catch (err) {
    out({ step: "error", message: String(err && err.stack ? err.stack : err) });
    code = 1;
  } finally {
    await browser.close();
  }
  process.exit(code);
}
