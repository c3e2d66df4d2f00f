// Latency by percentile as an SVG, drawn like HdrHistogram's plotter: the x axis is
// log10(1 / (1 − percentile)), so 90 %, 99 %, 99.9 % … are evenly spaced and the tail gets
// the room it deserves. One panel per system, side by side, on the same logarithmic latency
// axis so their curves compare at a glance.

import type * as hdr from 'hdr-histogram-js';

export interface PlotCurve {
  readonly label: string;
  /** Latencies in microseconds. */
  readonly histogram: hdr.Histogram;
}

export interface PlotPanel {
  readonly title: string;
  readonly curves: readonly PlotCurve[];
}

const PANEL_WIDTH = 560;
const PANEL_HEIGHT = 420;
const MARGIN = { left: 70, right: 45, top: 40, bottom: 60 };
const LEGEND_LINE_PX = 16;
const LEGEND_WIDTH_PX = 190;
const X_STEP = 0.02;
const X_DECADES_MAX = 6;
const COLORS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#17becf'];

interface Scale {
  readonly xDecades: number;
  readonly yLogMin: number;
  readonly yLogMax: number;
}

function curvePoints(histogram: hdr.Histogram, xDecadesMax: number): Array<[number, number]> {
  const points: Array<[number, number]> = [];
  const xEnd = Math.min(xDecadesMax, Math.log10(Math.max(1, histogram.totalCount)));
  for (let x = 0; x <= xEnd + 1e-9; x += X_STEP) {
    const percentile = 100 * (1 - 10 ** -x);
    points.push([x, Math.max(1, histogram.getValueAtPercentile(percentile)) / 1000]);
  }
  points.push([xEnd, Math.max(1, histogram.maxValue) / 1000]);
  return points;
}

function scaleOf(panels: readonly PlotPanel[]): Scale {
  let xDecades = 1;
  let low = Infinity;
  let high = 0;
  for (const curve of panels.flatMap((panel) => panel.curves)) {
    if (curve.histogram.totalCount === 0) continue;
    xDecades = Math.max(xDecades, Math.min(X_DECADES_MAX, Math.ceil(Math.log10(curve.histogram.totalCount))));
    low = Math.min(low, Math.max(1, curve.histogram.minNonZeroValue) / 1000);
    high = Math.max(high, curve.histogram.maxValue / 1000);
  }
  if (high === 0) return { xDecades, yLogMin: -1, yLogMax: 3 };
  return { xDecades, yLogMin: Math.floor(Math.log10(low)), yLogMax: Math.max(Math.floor(Math.log10(low)) + 1, Math.ceil(Math.log10(high))) };
}

function percentileLabel(decade: number): string {
  if (decade === 0) return '0%';
  return `${(100 - 100 / 10 ** decade).toFixed(Math.max(0, decade - 2))}%`;
}

function msLabel(logValue: number): string {
  const value = 10 ** logValue;
  return value >= 1000 ? `${value / 1000} s` : `${Number(value.toPrecision(1))} ms`;
}

function panelSvg(panel: PlotPanel, scale: Scale, offsetX: number): string {
  const width = PANEL_WIDTH - MARGIN.left - MARGIN.right;
  const height = PANEL_HEIGHT - MARGIN.top - MARGIN.bottom;
  const px = (x: number): number => offsetX + MARGIN.left + (x / scale.xDecades) * width;
  const py = (ms: number): number => MARGIN.top + height - ((Math.log10(ms) - scale.yLogMin) / (scale.yLogMax - scale.yLogMin)) * height;
  const parts: string[] = [`<text x="${px(scale.xDecades / 2)}" y="24" text-anchor="middle" font-size="15" font-weight="bold">${panel.title}</text>`];
  for (let decade = 0; decade <= scale.xDecades; decade++) {
    parts.push(`<line x1="${px(decade)}" y1="${MARGIN.top}" x2="${px(decade)}" y2="${MARGIN.top + height}" stroke="#ddd"/>`);
    parts.push(`<text x="${px(decade)}" y="${MARGIN.top + height + 18}" text-anchor="middle" font-size="11">${percentileLabel(decade)}</text>`);
  }
  for (let log = scale.yLogMin; log <= scale.yLogMax; log++) {
    parts.push(`<line x1="${px(0)}" y1="${py(10 ** log)}" x2="${px(scale.xDecades)}" y2="${py(10 ** log)}" stroke="#ddd"/>`);
    parts.push(`<text x="${px(0) - 6}" y="${py(10 ** log) + 4}" text-anchor="end" font-size="11">${msLabel(log)}</text>`);
  }
  parts.push(`<text x="${px(scale.xDecades / 2)}" y="${PANEL_HEIGHT - 12}" text-anchor="middle" font-size="12">percentile</text>`);
  parts.push(`<text transform="translate(${offsetX + 16} ${MARGIN.top + height / 2}) rotate(-90)" text-anchor="middle" font-size="12">produce → durable result event</text>`);
  // The legend sits bottom right, where latency-by-percentile curves (rising to the right) rarely go.
  const legendTop = MARGIN.top + height - 8 - panel.curves.length * LEGEND_LINE_PX;
  const legendLeft = px(scale.xDecades) - LEGEND_WIDTH_PX;
  parts.push(`<rect x="${legendLeft - 6}" y="${legendTop - 4}" width="${LEGEND_WIDTH_PX}" height="${panel.curves.length * LEGEND_LINE_PX + 6}" fill="white" fill-opacity="0.85" stroke="#ccc"/>`);
  panel.curves.forEach((curve, index) => {
    if (curve.histogram.totalCount === 0) return;
    const color = COLORS[index % COLORS.length]!;
    const points = curvePoints(curve.histogram, scale.xDecades).map(([x, ms]) => `${px(x).toFixed(1)},${py(ms).toFixed(1)}`).join(' ');
    parts.push(`<polyline fill="none" stroke="${color}" stroke-width="2" points="${points}"/>`);
    const legendY = legendTop + 10 + index * LEGEND_LINE_PX;
    parts.push(`<line x1="${legendLeft}" y1="${legendY - 4}" x2="${legendLeft + 20}" y2="${legendY - 4}" stroke="${color}" stroke-width="2"/>`);
    parts.push(`<text x="${legendLeft + 26}" y="${legendY}" font-size="11">${escapeXml(curve.label)}</text>`);
  });
  return parts.join('\n');
}

function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** An SVG document with one panel per entry of `panels`, left to right. */
export function renderLatencyPlot(panels: readonly PlotPanel[], caption: string): string {
  const scale = scaleOf(panels);
  const width = PANEL_WIDTH * panels.length;
  const height = PANEL_HEIGHT + 24;
  const body = panels.map((panel, index) => panelSvg(panel, scale, index * PANEL_WIDTH)).join('\n');
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
${body}
<text x="${width / 2}" y="${height - 6}" text-anchor="middle" font-size="11" fill="#555">${escapeXml(caption)}</text>
</svg>
`;
}
