/**
 * Splitting a line into words the way a POSIX shell does for simple commands: blanks
 * separate words, 'single quotes' keep everything, "double quotes" keep everything but
 * `\"`, `\\`, `\$` and `` \` ``, a backslash outside quotes keeps the next character, and `#`
 * at the start of a word begins a comment. No expansions of any kind.
 *
 * @module
 */

/**
 * The words of `line`; throws a plain Error naming an unterminated quote.
 *
 * @example
 * ```ts
 * import { splitWords } from "./shell_words.ts";
 * console.log(splitWords(`setfattr -n user.a -v "two words" /f # why`));
 * // [ "setfattr", "-n", "user.a", "-v", "two words", "/f" ]
 * ```
 */
export function splitWords(line: string): string[] {
  const words: string[] = [];
  let word: string | null = null;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (c === " " || c === "\t" || c === "\r") {
      if (word !== null) words.push(word);
      word = null;
    } else if (c === "#" && word === null) {
      break;
    } else if (c === "'") {
      const end = line.indexOf("'", i + 1);
      if (end < 0) throw new Error("unterminated single quote");
      word = (word ?? "") + line.slice(i + 1, end);
      i = end;
    } else if (c === '"') {
      word ??= "";
      for (i++;; i++) {
        if (i >= line.length) throw new Error("unterminated double quote");
        if (line[i] === '"') break;
        if (line[i] === "\\" && '"\\$`'.includes(line[i + 1] ?? "")) i++;
        word += line[i];
      }
    } else if (c === "\\") {
      if (i + 1 < line.length) word = (word ?? "") + line[++i];
    } else {
      word = (word ?? "") + c;
    }
  }
  if (word !== null) words.push(word);
  return words;
}
