import { html, type SafeHtml } from './html.ts'

/**
 * Inline SVG bar charts, drawn on the server: no script, no outside asset. Values are
 * integers (micro-euros, Wh) and bar heights are computed in integer arithmetic; only the
 * pixel positions are decimals. Each chart is an image with a title and a description for
 * screen readers, and each bar carries its figure as a tooltip; the page shows the same
 * figures in a table.
 */

export interface ChartBar {
  /** Stable key (a month, a day, a timestamp), kept on the bar as data-key. */
  key: string
  /** What the bar is, in words ("October 2026"). */
  label: string
  /** Text under the bar; null for none (when bars are too many to label each). */
  tick: string | null
  value: bigint
  valueText: string
}

export interface BarChartOptions {
  id: string
  title: string
  description: string
  bars: readonly ChartBar[]
  /** Text of the largest value, written at the top of the axis. */
  maxText?: string | undefined
}

const WIDTH = 640
const HEIGHT = 240
const MARGIN = { top: 24, right: 8, bottom: 28, left: 8 }
const PLOT_WIDTH = WIDTH - MARGIN.left - MARGIN.right
const PLOT_HEIGHT = HEIGHT - MARGIN.top - MARGIN.bottom
/** A tick centred nearer an edge than this (in drawing units) would be cut: it is aligned to the edge instead. */
const TICK_EDGE = 24
const EDGE_INSET = 2
/** Share of each slot left empty between bars, in percent. */
const GAP_PERCENT = 20

function px(n: number): string {
  return String(Math.round(n * 100) / 100)
}

function scaled(value: bigint, span: bigint): number {
  const magnitude = value < 0n ? -value : value
  return Number((magnitude * BigInt(PLOT_HEIGHT)) / span)
}

export function barChart(options: BarChartOptions): SafeHtml {
  const { id, bars } = options
  let max = 0n
  let min = 0n
  for (const b of bars) {
    if (b.value > max) max = b.value
    if (b.value < min) min = b.value
  }
  const span = max - min === 0n ? 1n : max - min
  const zeroY = MARGIN.top + scaled(max, span)
  const slot = bars.length === 0 ? PLOT_WIDTH : PLOT_WIDTH / bars.length
  const barWidth = (slot * (100 - GAP_PERCENT)) / 100
  const rects = bars.map((b, i) => {
    const h = scaled(b.value, span)
    const x = MARGIN.left + i * slot + (slot - barWidth) / 2
    const y = b.value >= 0n ? zeroY - h : zeroY
    return html`<rect class="${b.value < 0n ? 'bar negative' : 'bar'}" data-key="${b.key}" data-value="${b.value.toString()}" x="${px(x)}" y="${px(y)}" width="${px(barWidth)}" height="${px(h)}"><title>${b.label}: ${b.valueText}</title></rect>`
  })
  const ticks = bars.map((b, i) => {
    if (b.tick === null) return ''
    // Centred under its bar, but kept inside the drawing at either end (24:00 under a day's last bar).
    const x = MARGIN.left + i * slot + slot / 2
    const [at, anchor] = x < TICK_EDGE ? [EDGE_INSET, 'start'] : x > WIDTH - TICK_EDGE ? [WIDTH - EDGE_INSET, 'end'] : [x, 'middle']
    return html`<text class="tick" x="${px(at)}" y="${HEIGHT - 10}" text-anchor="${anchor}">${b.tick}</text>`
  })
  return html`<svg class="chart" id="${id}" viewBox="0 0 ${WIDTH} ${HEIGHT}" role="img" aria-labelledby="${id}-title ${id}-desc" preserveAspectRatio="xMidYMid meet">
<title id="${id}-title">${options.title}</title>
<desc id="${id}-desc">${options.description}</desc>
${options.maxText === undefined ? '' : html`<text class="axis" x="${MARGIN.left}" y="14">${options.maxText}</text>`}
<line class="zero" x1="${MARGIN.left}" x2="${WIDTH - MARGIN.right}" y1="${px(zeroY)}" y2="${px(zeroY)}"></line>
${rects}
${ticks}
</svg>`
}
