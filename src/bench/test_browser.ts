// Test helper (imports the devDependency playwright-core; only tests import this file): open an HTML report in
// headless Chromium, read back what Chart.js drew, and keep a screenshot.
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { packageRoot } from './provenance.js';

export const CHROMIUM = process.env.QATKIT_CHROMIUM ?? '/usr/bin/chromium';

const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

export interface RenderedSeries {
  label: string;
  /** points in the chart's data */
  points: number;
  /** point elements Chart.js laid out */
  elements: number;
  /** every element has finite pixel coordinates inside the chart area */
  placed: boolean;
}

export interface RenderedChart {
  id: string;
  title: string;
  series: RenderedSeries[];
  /** canvas pixels that are not transparent: 0 means nothing was drawn */
  inkedPixels: number;
}

export interface RenderResult {
  charts: RenderedChart[];
  /** requests to anything but the file itself: a self-contained report makes none */
  externalRequests: string[];
  pageErrors: string[];
  screenshot: string;
}

/** Where tests keep artifacts (git-ignored: under runs/). */
export const artifactsDir = () => join(packageRoot(), 'runs', 'test-artifacts', 'bench');

export async function renderReport(htmlPath: string, screenshot: string): Promise<RenderResult> {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found: install Chromium (apt-get install -y chromium) or set QATKIT_CHROMIUM`);
  const { chromium } = await import('playwright-core');
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS });
  try {
    const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
    const url = pathToFileURL(htmlPath).href;
    const externalRequests: string[] = [];
    const pageErrors: string[] = [];
    page.on('pageerror', (e) => pageErrors.push(e.message));
    page.on('console', (m) => {
      if (m.type() === 'error') pageErrors.push(m.text());
    });
    await page.route('**/*', (route) => {
      const u = route.request().url();
      if (u === url) return route.continue();
      externalRequests.push(u);
      return route.abort();
    });
    await page.goto(url);
    await page.waitForFunction(() => (window as unknown as { qatkitReady?: boolean }).qatkitReady === true, null, { timeout: 20_000 });
    const charts = await page.evaluate(() => {
      type ChartLike = {
        data: { datasets: { label: string; data: unknown[] }[] };
        options: { plugins: { title: { text: string } } };
        chartArea: { left: number; right: number; top: number; bottom: number };
        getDatasetMeta(i: number): { data: { x: number; y: number }[] };
        canvas: HTMLCanvasElement;
      };
      const list = (window as unknown as { qatkitCharts: { id: string; chart: ChartLike }[] }).qatkitCharts;
      return list.map(({ id, chart }) => {
        const a = chart.chartArea;
        const series = chart.data.datasets.map((d, i) => {
          const els = chart.getDatasetMeta(i).data;
          const placed = els.every((e) => Number.isFinite(e.x) && Number.isFinite(e.y) && e.x >= a.left - 1 && e.x <= a.right + 1 && e.y >= a.top - 1 && e.y <= a.bottom + 1);
          return { label: d.label, points: d.data.length, elements: els.length, placed };
        });
        const c = chart.canvas;
        const px = c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data;
        let inked = 0;
        for (let i = 3; i < px.length; i += 4) if (px[i] > 0) inked++;
        return { id, title: String(chart.options.plugins.title.text), series, inkedPixels: inked };
      });
    });
    mkdirSync(dirname(screenshot), { recursive: true });
    await page.screenshot({ path: screenshot, fullPage: true });
    return { charts, externalRequests, pageErrors, screenshot };
  } finally {
    await browser.close();
  }
}
