/**
 * Text that reaches a terminal, a log, the history or Markdown must not be able to drive the terminal (ANSI/OSC
 * escapes), fake a line of its own (CR, VT, FF, NEL, U+2028/U+2029), or reorder what is shown (bidi overrides).
 */

// ESC followed by a CSI (ESC [ … final byte), an OSC/DCS/PM/APC/SOS string (… BEL or ESC \), or any one byte.
const ESCAPE = /\x1b(?:\[[0-?]*[ -/]*[@-~]?|[\]PX^_][^\x07\x1b]*(?:\x07|\x1b\\)?|[\s\S]?)/g
// Single-byte CSI (U+009B) and OSC (U+009D) introducers with their parameters.
const C1_SEQUENCE = /\u009b[0-?]*[ -/]*[@-~]?|[\u0090\u0098\u009d\u009e\u009f][^\x07\u009c]*(?:\x07|\u009c)?/g
/** Line breaks of every kind: LF, CR, VT, FF, FS/GS/RS, NEL, LINE SEPARATOR, PARAGRAPH SEPARATOR. */
export const LINE_BREAKS = /\r\n|[\n\v\f\r\x1c-\x1e\u0085\u2028\u2029]/
const BREAKS_G = /\r\n|[\n\v\f\r\x1c-\x1e\u0085\u2028\u2029]/g
// Every other control: C0 (tab kept apart), DEL, C1, bidi embeddings/overrides/isolates, zero-width joiners aside.
const CONTROLS = /[\x00-\x08\x0e-\x1b\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g

/**
 * One line of text safe to print: escape sequences removed, every line break and tab turned into a space,
 * every other control character removed.
 */
export function sanitizeLine(text: string): string {
  return stripEscapes(text).replace(BREAKS_G, ' ').replace(/\t/g, ' ').replace(CONTROLS, '')
}

/**
 * Text of several lines safe to print: escape sequences and control characters removed; CR LF, CR, VT, FF, NEL,
 * U+2028 and U+2029 become LF (so every line break is one a reader sees), tabs are kept.
 */
export function sanitizeText(text: string): string {
  return stripEscapes(text).replace(BREAKS_G, '\n').replace(CONTROLS, '')
}

function stripEscapes(text: string): string {
  return text.replace(ESCAPE, '').replace(C1_SEQUENCE, '')
}
