// The offered rates of a benchmark run, as given on the command line:
//   10000   a fixed rate, commands per second
//   max     as fast as possible with a bounded window in flight: measures the capacity
//   80%     a fixed rate at that share of this system's capacity (measured by its max run)
//   50x     a fixed rate at that multiple of the BASELINE's capacity: Tally at 50 times the
//           load the baseline can carry, to compare its p99 with the baseline's own

export type OfferedRate =
  | { readonly kind: 'fixed'; readonly rate: number }
  | { readonly kind: 'max' }
  | { readonly kind: 'capacityShare'; readonly percent: number }
  | { readonly kind: 'baselineMultiple'; readonly times: number };

export function parseOfferedRates(text: string): OfferedRate[] {
  return text.split(',').map((entry) => {
    if (entry === 'max') return { kind: 'max' };
    const number = Number(entry.replace(/[%x]$/, ''));
    if (!Number.isFinite(number) || number <= 0) throw new Error(`bad rate "${entry}": a positive number of commands/s, max, N% or Nx`);
    if (entry.endsWith('%')) return { kind: 'capacityShare', percent: number };
    if (entry.endsWith('x')) return { kind: 'baselineMultiple', times: number };
    if (!Number.isInteger(number)) throw new Error(`bad rate "${entry}": commands/s must be an integer`);
    return { kind: 'fixed', rate: number };
  });
}

/** The rate's own name: "10000", "max", "80%", "50x". */
export function offeredRateName(offered: OfferedRate): string {
  switch (offered.kind) {
    case 'fixed': return String(offered.rate);
    case 'max': return 'max';
    case 'capacityShare': return `${offered.percent}%`;
    case 'baselineMultiple': return `${offered.times}x`;
  }
}

/** "max" first (it measures the capacity the relative rates need), then the others in the order given. */
export function runOrder(rates: readonly OfferedRate[]): OfferedRate[] {
  return [...rates.filter((rate) => rate.kind === 'max'), ...rates.filter((rate) => rate.kind !== 'max')];
}

/** Commands per second, or a reason it cannot be run. */
export function resolveOfferedRate(offered: OfferedRate, capacity: number | undefined, baselineCapacity: number | undefined): number | string {
  switch (offered.kind) {
    case 'fixed': return offered.rate;
    case 'max': return 0;
    case 'capacityShare':
      if (capacity === undefined) return `${offeredRateName(offered)} needs "max" in the same list`;
      return Math.max(1, Math.round((capacity * offered.percent) / 100));
    case 'baselineMultiple':
      if (baselineCapacity === undefined) return `${offeredRateName(offered)} needs the baseline's max run first`;
      return Math.max(1, Math.round(baselineCapacity * offered.times));
  }
}
