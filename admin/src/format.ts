const usdFormat = new Intl.NumberFormat("en-US", {
  style: "currency",
  currency: "USD",
  minimumFractionDigits: 2,
  maximumFractionDigits: 6,
});
const countFormat = new Intl.NumberFormat("en-US");

export const usd = (value: number | string | null | undefined): string =>
  value === null || value === undefined ? "—" : usdFormat.format(Number(value));

export const count = (value: number | null | undefined): string =>
  value === null || value === undefined ? "—" : countFormat.format(value);

export const percent = (part: number, whole: number): string =>
  whole === 0 ? "0%" : `${((100 * part) / whole).toFixed(1)}%`;

export function when(seconds: number | null | undefined): string {
  if (!seconds) return "—";
  return new Date(seconds * 1000).toISOString().replace("T", " ").slice(0, 16) + " UTC";
}

export function isoDay(date: Date): string {
  return date.toISOString().slice(0, 10);
}
