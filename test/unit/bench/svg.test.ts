// The charts `npm run bench` writes (src/bench/svg.ts): well-formed SVG with one mark per point,
// axes that cover the data, escaped text, and a logarithmic axis for latencies.
import { describe, expect, test } from 'vitest';
import { barChart, escapeXml, lineChart, niceTicks, timelineChart } from '../../../src/bench/svg.js';

function balanced(svg: string): void {
  expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
  expect(svg.trim().endsWith('</svg>')).toBe(true);
  expect(svg).not.toMatch(/NaN|undefined|Infinity/);
  // every element is closed: opening tags minus self-closed equal closing tags
  const open = (svg.match(/<[a-z]+[\s>]/g) ?? []).length;
  const selfClosed = (svg.match(/\/>/g) ?? []).length;
  const close = (svg.match(/<\/[a-z]+>/g) ?? []).length;
  expect(open - selfClosed).toBe(close);
}

describe('charts', () => {
  test('niceTicks: round steps covering the range', () => {
    expect(niceTicks(0, 28000)).toEqual([0, 10000, 20000, 30000]);
    expect(niceTicks(0, 12000)).toEqual([0, 2500, 5000, 7500, 10000, 12500]);
    expect(niceTicks(0, 1)).toEqual([0, 0.2, 0.4, 0.6, 0.8, 1]);
    expect(niceTicks(3, 3)).toEqual([3]);
  });

  test('a line chart has a polyline per series and a circle per finite point; titles are escaped', () => {
    const svg = lineChart({
      title: 'DORA/s <ours> & "Kea"', xLabel: 'offered', yLabel: 'done',
      series: [{ name: 'ours', points: [[500, 500], [1000, 990], [2000, NaN]] }, { name: 'Kea', points: [[500, 498]] }],
    });
    balanced(svg);
    expect(svg).toContain(escapeXml('DORA/s <ours> & "Kea"'));
    expect(svg.match(/<polyline/g)).toHaveLength(2);
    expect(svg.match(/<circle/g)).toHaveLength(3);
  });

  test('a logarithmic axis spans whole decades and drops values that are not positive', () => {
    const svg = lineChart({ title: 'p99', xLabel: 'x', yLabel: 'ms', logY: true, series: [{ name: 'a', points: [[1, 0.3], [2, 40], [3, 0]] }] });
    balanced(svg);
    for (const t of ['0.1', '1', '10', '100']) expect(svg).toContain(`>${t}</text>`);
    expect(svg.match(/<circle/g)).toHaveLength(2);
  });

  test('bars and a timeline', () => {
    const bars = barChart('Gbit/s', 'Gbit/s', [{ label: '1', value: 19 }, { label: '10,000', value: 19.3 }, { label: 'none', value: NaN }]);
    balanced(bars);
    expect(bars).toContain('>n/a</text>');
    const tl = timelineChart('launch', [
      { label: 'ours', segments: [{ label: 'node', from: 0, to: 20 }, { label: 'prepare', from: 20, to: 31 }] },
      { label: 'ref', segments: [{ label: 'systemd-nspawn', from: 0, to: 40 }] },
    ]);
    balanced(tl);
    expect(tl.match(/<rect x="[\d.]+" y="[\d.]+" width/g)?.length).toBeGreaterThanOrEqual(3);
    expect(tl).toContain('<title>prepare: 20–31 ms</title>');
  });
});
