/** Human-readable byte counts: 1.5 kB, 163.0 MB. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let value = bytes;
  let unit = 0;
  // 999.95 and up would print as "1000.0": the next unit's "1.0" instead.
  while (value >= 999.95 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/** 12,345 */
export function formatCount(n: number): string {
  return n.toLocaleString('en-US');
}

/** 0.4 s, 12.3 s, 2m 05s (whole seconds past a minute: 119.6 s is 2m 00s, not 1m 60s) */
export function formatSeconds(seconds: number): string {
  // Below 59.95 s, one decimal never rounds up to "60.0 s".
  if (seconds < 59.95) return `${seconds.toFixed(1)} s`;
  const total = Math.round(seconds);
  return `${Math.floor(total / 60)}m ${String(total % 60).padStart(2, '0')}s`;
}
