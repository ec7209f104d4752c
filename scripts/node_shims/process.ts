/**
 * `node:process` for the bundle: what commander reads (stdout/stderr writes, terminal width,
 * colour variables, exit, argv), over Deno's own APIs.
 *
 * @module
 */

const encoder = new TextEncoder();

function stream(file: typeof Deno.stdout | typeof Deno.stderr) {
  return {
    /**
     * Writes everything now (commander's output must be out before Deno.exit). A reader that
     * went away (`ext4ts --help | head -1`) ends the output quietly, as Node's stream does.
     */
    write(chunk: string | Uint8Array): boolean {
      let data = typeof chunk === "string" ? encoder.encode(chunk) : chunk;
      try {
        while (data.length > 0) data = data.subarray(file.writeSync(data));
      } catch (e) {
        if (e instanceof Deno.errors.BrokenPipe) return false;
        throw e;
      }
      return true;
    },
    get isTTY(): boolean {
      return file.isTerminal();
    },
    get columns(): number | undefined {
      try {
        return Deno.consoleSize().columns;
      } catch {
        return undefined;
      }
    },
    hasColors(): boolean {
      return file.isTerminal() && Deno.env.get("TERM") !== "dumb";
    },
  };
}

/** What commander looks at of the process. */
interface Process {
  stdout: ReturnType<typeof stream>;
  stderr: ReturnType<typeof stream>;
  env: Record<string, string | undefined>;
  argv: string[];
  execArgv: string[];
  execPath: string;
  versions: Record<string, string>;
  platform: string;
  exit(code?: number): never;
  on(): Process;
}

/** The process, as far as commander looks at it. */
const process: Process = {
  stdout: stream(Deno.stdout),
  stderr: stream(Deno.stderr),
  /** The environment, read live (commander checks NO_COLOR, FORCE_COLOR, option env vars). */
  env: new Proxy({} as Record<string, string | undefined>, {
    get: (_, key) => typeof key === "string" ? Deno.env.get(key) : undefined,
    has: (_, key) => typeof key === "string" && Deno.env.has(key),
  }),
  argv: [Deno.execPath(), decodeURIComponent(new URL(Deno.mainModule).pathname), ...Deno.args],
  execArgv: [] as string[],
  execPath: Deno.execPath(),
  versions: {} as Record<string, string>,
  platform: Deno.build.os,
  exit(code?: number): never {
    Deno.exit(code ?? 0);
  },
  on(): Process {
    return process; // signals forwarded to executable subcommands, which ext4ts has none of
  },
};

export default process;
