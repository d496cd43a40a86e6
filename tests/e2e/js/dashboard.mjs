// Drives the gateway's /dashboard in Debian's headless chromium with playwright-core (no browser download).
// Usage: node dashboard.mjs DASHBOARD_URL SCREENSHOT_PATH CHART_SHOT_PREFIX
// Waits until every chart has data, then screenshots the page and each chart (CHART_SHOT_PREFIX-<id>.png) and
// prints one JSON line: what each chart drew, for the test to check along with the screenshots' pixels.
import { drivePage, out } from "./headless.mjs";

const [pageUrl, screenshotPath, chartPrefix] = process.argv.slice(2);
const CHARTS = ["chart-throughput", "chart-latency", "chart-deliveries", "chart-dlq", "chart-lag"];

await drivePage({ width: 1100, height: 900 }, async (page, consoleErrors) => {
  await page.goto(pageUrl);
  // Rates and interval latencies need two polls; lines need several points.
  await page.waitForFunction(() => {
    const n = (id, key) => Number(document.getElementById(id).dataset[key] || 0);
    return Number(document.getElementById("status").dataset.polls) >= 4
      && n("chart-throughput", "points") >= 6 && n("chart-latency", "points") >= 2
      && n("chart-deliveries", "bars") >= 1 && n("chart-dlq", "bars") >= 1 && n("chart-lag", "bars") >= 1;
  }, null, { timeout: 90000, polling: 500 });
  const charts = await page.evaluate((ids) => Object.fromEntries(ids.map((id) => {
    const svg = document.getElementById(id);
    const paths = [...svg.querySelectorAll("path.line")].map((p) => ({
      series: p.dataset.series, segments: (p.getAttribute("d").match(/[ML]/g) || []).length,
    }));
    return [id, { points: Number(svg.dataset.points || 0), bars: Number(svg.dataset.bars || 0),
      rects: svg.querySelectorAll("rect").length, paths, labels: [...svg.querySelectorAll("text")].map((t) => t.textContent) }];
  })), CHARTS);
  const tiles = await page.evaluate(() => Object.fromEntries(
    [...document.querySelectorAll(".tile .value")].map((v) => [v.id, v.textContent])));
  await page.screenshot({ path: screenshotPath, fullPage: true });
  for (const id of CHARTS) await page.locator("#" + id).screenshot({ path: `${chartPrefix}-${id}.png` });
  out({ step: "charts", charts, tiles, status: await page.textContent("#status"), consoleErrors });
});
