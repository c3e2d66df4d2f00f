// A flame graph (Brendan Gregg's layout) of folded stacks, as a standalone SVG: the x axis
// is the share of sampled time, not time order; each box is a function, its width the
// time spent in it and everything it called, the boxes on top of it its callees; children
// are sorted by name so identical stacks merge. Hovering a box shows its full name and
// time (an SVG <title>), so the file needs no script and opens in any browser.

interface FlameNode {
  readonly name: string;
  micros: number;
  readonly children: Map<string, FlameNode>;
}

export interface FlameGraphOptions {
  readonly title: string;
  readonly subtitle: string;
  readonly widthPx?: number;
}

const FRAME_HEIGHT_PX = 17;
const HEADER_PX = 46;
const FOOTER_PX = 8;
const CHAR_WIDTH_PX = 6.6;
/** Boxes narrower than this are left out: they could not be seen or hovered anyway. */
const MIN_WIDTH_PX = 0.4;

function buildTree(stacks: ReadonlyMap<string, number>): FlameNode {
  const root: FlameNode = { name: 'all', micros: 0, children: new Map() };
  for (const [stack, micros] of stacks) {
    root.micros += micros;
    let node = root;
    for (const frame of stack.split(';')) {
      let child = node.children.get(frame);
      if (child === undefined) {
        child = { name: frame, micros: 0, children: new Map() };
        node.children.set(frame, child);
      }
      child.micros += micros;
      node = child;
    }
  }
  return root;
}

function depthOf(node: FlameNode): number {
  let deepest = 0;
  for (const child of node.children.values()) deepest = Math.max(deepest, depthOf(child));
  return deepest + 1;
}

function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

// Colour says where the code lives: Tally's own code warm, Node's internals and libraries
// cool, GC red, idle grey; the shade varies with the name so neighbours stay apart.
function colourOf(name: string): string {
  let hash = 0;
  for (let i = 0; i < name.length; i++) hash = (Math.imul(hash, 31) + name.charCodeAt(i)) | 0;
  const shade = (hash >>> 0) % 40;
  if (name === '(garbage collector)') return 'rgb(230,60,50)';
  if (name === '(idle)' || name === '(program)') return 'rgb(200,200,200)';
  if (name.includes(' dist/')) return `rgb(240,${120 + shade * 2},${40 + shade})`;
  if (name.includes('node_modules/')) return `rgb(${90 + shade},${190 + shade},${190 + shade})`;
  if (name.includes(' node:')) return `rgb(${110 + shade},${150 + shade},230)`;
  return `rgb(${190 + shade},${170 + shade},${120 + shade})`;
}

function frameSvg(node: FlameNode, xPx: number, widthPx: number, yPx: number, totalMicros: number): string {
  const share = ((node.micros / totalMicros) * 100).toFixed(2);
  const tip = `${node.name} — ${(node.micros / 1000).toFixed(1)} ms, ${share}%`;
  const maxChars = Math.floor((widthPx - 6) / CHAR_WIDTH_PX);
  const text = maxChars < 3 ? '' : node.name.length <= maxChars ? node.name : `${node.name.slice(0, maxChars - 2)}..`;
  return `<g><title>${escapeXml(tip)}</title><rect x="${xPx.toFixed(2)}" y="${yPx}" width="${widthPx.toFixed(2)}" height="${FRAME_HEIGHT_PX - 1}" fill="${colourOf(node.name)}" rx="2"/>` +
    (text === '' ? '' : `<text x="${(xPx + 3).toFixed(2)}" y="${yPx + 12}">${escapeXml(text)}</text>`) + '</g>';
}

// Lays out `node`'s children on top of it, left to right in name order.
function layout(node: FlameNode, xPx: number, yPx: number, pxPerMicro: number, totalMicros: number, out: string[]): void {
  let childX = xPx;
  const children = [...node.children.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const child of children) {
    const widthPx = child.micros * pxPerMicro;
    if (widthPx >= MIN_WIDTH_PX) {
      out.push(frameSvg(child, childX, widthPx, yPx - FRAME_HEIGHT_PX, totalMicros));
      layout(child, childX, yPx - FRAME_HEIGHT_PX, pxPerMicro, totalMicros, out);
    }
    childX += widthPx;
  }
}

/** The SVG text of a flame graph of `stacks` ("outer;…;inner" → microseconds). */
export function renderFlameGraph(stacks: ReadonlyMap<string, number>, options: FlameGraphOptions): string {
  const widthPx = options.widthPx ?? 1200;
  const root = buildTree(stacks);
  const heightPx = HEADER_PX + depthOf(root) * FRAME_HEIGHT_PX + FOOTER_PX;
  const out: string[] = [];
  const bottom = heightPx - FOOTER_PX;
  out.push(frameSvg(root, 0, widthPx, bottom - FRAME_HEIGHT_PX, Math.max(1, root.micros)));
  layout(root, 0, bottom - FRAME_HEIGHT_PX, widthPx / Math.max(1, root.micros), Math.max(1, root.micros), out);
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${widthPx}" height="${heightPx}" viewBox="0 0 ${widthPx} ${heightPx}" font-family="monospace" font-size="11">`,
    `<rect width="100%" height="100%" fill="#fdfdf6"/>`,
    `<text x="${widthPx / 2}" y="20" font-size="16" text-anchor="middle">${escapeXml(options.title)}</text>`,
    `<text x="${widthPx / 2}" y="38" fill="#555" text-anchor="middle">${escapeXml(options.subtitle)}</text>`,
    ...out,
    '</svg>',
  ].join('\n');
}
