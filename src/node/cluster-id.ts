// Cluster ids derived alike by every member that computes them (from --cluster, a backup, a forced new cluster).

/** 32-bit FNV-1a as 8 hex digits: cluster ids derived alike by every member (from --cluster, a backup, a forced new cluster). */
export function fnv1a(text: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h.toString(16).padStart(8, "0");
}
