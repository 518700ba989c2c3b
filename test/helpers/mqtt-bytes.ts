// Bytes of MQTT packets built by hand in tests.

/** The Remaining Length field of a fixed header: `n` in the minimal variable-length encoding [MQTT-2.2.3]. */
export function remainingLength(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return out;
}
