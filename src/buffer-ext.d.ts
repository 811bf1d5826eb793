// Typings for Buffer methods that Node and Bun ship but @types leave out.
// latin1Slice/latin1Write turn bytes into byte strings and back with one copy.
declare global {
  interface Buffer {
    latin1Slice(start?: number, end?: number): string;
    latin1Write(s: string, offset?: number, length?: number): number;
  }
}
export {};
