// A small stacked bar chart in SVG: succeeded (bottom) and failed (top) executions per bucket.

import { h } from './dom.js';

const SVG = 'http://www.w3.org/2000/svg';
const WIDTH = 240;
const HEIGHT = 80;

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  for (const child of children) if (child) node.append(child);
  return node;
}

/**
 * buckets: [{start, succeeded, failed}]; label(bucket) names one bar ("14:00"), tick(bucket, i)
 * gives the axis text under some bars (or null).
 */
export function executionsChart({ title, buckets, label, tick }) {
  const succeeded = buckets.reduce((sum, bucket) => sum + bucket.succeeded, 0);
  const failed = buckets.reduce((sum, bucket) => sum + bucket.failed, 0);
  const top = Math.max(1, ...buckets.map((bucket) => bucket.succeeded + bucket.failed));
  const slot = WIDTH / Math.max(1, buckets.length);
  const barWidth = Math.max(2, slot * 0.7);
  const plot = HEIGHT;
  const scale = (n) => (n / top) * (plot - 4);

  const bars = buckets.map((bucket, index) => {
    const x = index * slot + (slot - barWidth) / 2;
    const okHeight = scale(bucket.succeeded);
    const failHeight = scale(bucket.failed);
    return svg(
      'g',
      {},
      svg('title', {}, `${label(bucket)}: ${bucket.succeeded} succeeded, ${bucket.failed} failed`),
      svg('rect', { class: 'bar-slot', x: index * slot, y: 0, width: slot, height: plot }),
      okHeight
        ? svg('rect', {
            class: 'bar-ok',
            x,
            y: plot - okHeight,
            width: barWidth,
            height: okHeight,
            rx: 1,
          })
        : null,
      failHeight
        ? svg('rect', {
            class: 'bar-fail',
            x,
            y: plot - okHeight - failHeight,
            width: barWidth,
            height: failHeight,
            rx: 1,
          })
        : null,
    );
  });

  const chart = svg(
    'svg',
    {
      viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
      class: 'chart',
      role: 'img',
      'aria-label': `${title}: ${succeeded} succeeded, ${failed} failed`,
      preserveAspectRatio: 'none',
    },
    ...bars,
    svg('line', {
      class: 'chart-axis',
      x1: 0,
      x2: WIDTH,
      y1: plot,
      y2: plot,
      'vector-effect': 'non-scaling-stroke',
    }),
  );
  // The bars stretch to the width; the axis labels are HTML so that they keep their shape.
  const ticks = h(
    'div',
    { class: 'chart-ticks', 'aria-hidden': 'true' },
    buckets.map((bucket, index) => h('span', { text: tick(bucket, index) ?? '' })),
  );
  // Through the CSSOM: the content policy (style-src 'self') refuses style attributes.
  ticks.style.gridTemplateColumns = `repeat(${buckets.length}, 1fr)`;
  return h(
    'figure',
    { class: 'chart-figure' },
    h(
      'figcaption',
      {},
      h('span', { text: title }),
      h('span', { class: 'muted', text: ` ${succeeded} ok · ${failed} failed` }),
    ),
    chart,
    ticks,
  );
}
