import "uplot/dist/uPlot.min.css";

import { useEffect, useRef } from "react";
import uPlot from "uplot";

export interface Series {
  label: string;
  values: number[];
  color: string;
}

// A small time-series chart (uPlot draws on a canvas: no inline <style>, so it runs
// under the page's strict CSP).
export function TimeChart({
  title,
  days,
  series,
  format,
}: {
  title: string;
  days: string[];
  series: Series[];
  format?: (value: number) => string;
}) {
  const holder = useRef<HTMLDivElement>(null);

  useEffect(() => {
    const element = holder.current;
    if (!element) return;
    const xs = days.map((day) => Date.parse(`${day}T00:00:00Z`) / 1000);
    const options: uPlot.Options = {
      width: Math.max(element.clientWidth, 240),
      height: 200,
      title,
      scales: { x: { time: true } },
      axes: [{}, { values: (_u, ticks) => ticks.map((t) => (format ? format(t) : String(t))) , size: 84 }],
      series: [
        {},
        ...series.map((s) => ({
          label: s.label,
          stroke: s.color,
          width: 2,
          points: { show: xs.length < 40 },
          value: (_u: uPlot, v: number | null) => (v === null ? "—" : format ? format(v) : String(v)),
        })),
      ],
    };
    const chart = new uPlot(options, [xs, ...series.map((s) => s.values)], element);
    const observer = new ResizeObserver(() => {
      chart.setSize({ width: Math.max(element.clientWidth, 240), height: 200 });
    });
    observer.observe(element);
    return () => {
      observer.disconnect();
      chart.destroy();
    };
  }, [title, days, series, format]);

  return <div className="chart" ref={holder} role="img" aria-label={title} />;
}

// Horizontal bars for a breakdown: plain elements, so screen readers read the numbers.
export function Bars({
  rows,
  format,
}: {
  rows: { label: string; value: number }[];
  format: (value: number) => string;
}) {
  const max = Math.max(...rows.map((r) => r.value), 0);
  return (
    <ul className="bars">
      {rows.map((row) => (
        <li key={row.label}>
          <span className="bar-label">{row.label}</span>
          <meter min={0} max={max || 1} value={row.value} aria-label={row.label} />
          <span className="bar-value">{format(row.value)}</span>
        </li>
      ))}
    </ul>
  );
}
