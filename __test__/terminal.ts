// A real terminal for tests of pi's interactive TUI: a detached tmux session on a server of its
// own (its own socket), driven with send-keys and read with capture-pane. Waits poll the screen
// for text, never sleep a fixed time; every failure shows the screen as it was.

import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** What runs in the terminal: a program, its arguments, its whole environment and its cwd. */
export interface TerminalCommand {
  argv: string[];
  env: Record<string, string>;
  cwd: string;
}

export class Terminal {
  /** The tmux server's socket, in a directory of its own that goes with the server;
   * `tmux -S <socket> attach` watches the test live. */
  readonly socket: string;
  readonly #dir: string;
  /** Every screen a wait captured, in order, for a secret scan after the test. */
  readonly screens: string[] = [];
  #closed = false;
  /** Kills the tmux server once this process is gone, however it went (a crash, Ctrl+C, a kill):
   * the server is a daemon, so nothing else would end it or the pi inside. It waits for its stdin,
   * a pipe from this process, to close. */
  readonly #watchdog: ChildProcess;

  private constructor() {
    const dir = mkdtempSync(join(tmpdir(), "pi-dispatch-tmux-"));
    this.#dir = dir;
    this.socket = join(dir, "socket");
    const cleanup = 'cat >/dev/null; tmux -S "$1/socket" kill-server 2>/dev/null; rm -rf "$1"';
    this.#watchdog = spawn("sh", ["-c", cleanup, "sh", dir], { detached: true, stdio: ["pipe", "ignore", "ignore"] });
    this.#watchdog.unref();
    (this.#watchdog.stdin as unknown as { unref?: () => void }).unref?.();
  }

  /** Starts `command` in a `width` x `height` terminal. Nothing from this process's environment
   * reaches it (`env -i`); the pane stays after the program exits, so its last screen is kept. */
  static open(command: TerminalCommand, size = { width: 120, height: 40 }): Terminal {
    const terminal = new Terminal();
    const env = Object.entries(command.env).map(([name, value]) => `${name}=${value}`);
    // `status off`: tmux's own status line would take a row from the program.
    terminal.#tmux(
      ["-f", "/dev/null", "start-server", ";", "set-option", "-g", "status", "off", ";"],
      ["set-option", "-g", "remain-on-exit", "on", ";"],
      ["new-session", "-d", "-s", "main", "-x", String(size.width), "-y", String(size.height), "-c", command.cwd],
      ["env", "-i", ...env, ...command.argv],
    );
    return terminal;
  }

  /** The visible screen, one line per row, trailing blanks trimmed; with `colours`, the SGR
   * escape sequences the program drew with are kept. */
  screen(colours = false): string {
    return this.#tmux(["capture-pane", "-p", ...(colours ? ["-e"] : []), "-t", "main"])
      .split("\n")
      .map((line) => line.trimEnd())
      .join("\n")
      .trimEnd();
  }

  /** Waits until the screen matches (a string: contains it) and returns that screen. On timeout
   * throws with `what` and the last screen. */
  async waitFor(expected: string | RegExp, what: string, timeoutMs = 30_000): Promise<string> {
    const matches = (screen: string) =>
      typeof expected === "string" ? screen.includes(expected) : expected.test(screen);
    return await this.waitUntil(matches, what, timeoutMs);
  }

  /** Waits until `test(screen)` holds; as `waitFor`. */
  async waitUntil(test: (screen: string) => boolean, what: string, timeoutMs = 30_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const screen = this.screen();
      if (test(screen)) {
        this.screens.push(screen);
        return screen;
      }
      if (Date.now() > deadline) {
        this.screens.push(screen);
        throw new ScreenError(`${what}: not on screen within ${timeoutMs / 1000} s`, screen);
      }
      await new Promise((wake) => setTimeout(wake, 100));
    }
  }

  /** Presses keys by tmux's names: `Enter`, `Escape`, `Up`, `Down`, `Tab`, `C-c`, ... */
  press(...keys: string[]): void {
    this.#tmux(["send-keys", "-t", "main", ...keys]);
  }

  /** Types `text` key by key, as a person would (no key names are interpreted). */
  type(text: string): void {
    this.#tmux(["send-keys", "-t", "main", "-l", text]);
  }

  /** Pastes `text` the way a terminal does: one bracketed paste when the program asked for it. */
  paste(text: string): void {
    this.#tmux(["set-buffer", "-b", "paste", text]);
    this.#tmux(["paste-buffer", "-p", "-d", "-b", "paste", "-t", "main"]);
  }

  /** Ends the program and the tmux server. Safe to call twice. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#tmux(["kill-server"]);
    } catch {
      // The server is gone already.
    }
    rmSync(this.#dir, { recursive: true, force: true });
    this.#watchdog.stdin?.end();
  }

  #tmux(...parts: string[][]): string {
    try {
      return execFileSync("tmux", ["-S", this.socket, ...parts.flat()], {
        encoding: "utf8",
        stdio: ["ignore", "pipe", "pipe"],
      });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") {
        throw new Error("tmux is not installed: the TUI tests run pi in it (e.g. apt-get install tmux)");
      }
      throw error;
    }
  }
}

/** A failure that shows the screen it was about, boxed, so blank rows are visible. */
export class ScreenError extends Error {
  constructor(message: string, screen: string) {
    super(`${message}. The screen:\n${["┌", ...screen.split("\n").map((row) => `│${row}`), "└"].join("\n")}`);
  }
}

/** `error`, made to show the terminal's screen as it is now unless it shows one already. */
export function withScreen(error: unknown, terminal: Terminal | undefined): unknown {
  if (!terminal || error instanceof ScreenError || !(error instanceof Error)) return error;
  let screen: string;
  try {
    screen = terminal.screen();
  } catch {
    return error;
  }
  error.message = new ScreenError(error.message, screen).message;
  return error;
}

/** Fails with `message` and the screen unless `screen` matches `expected`. */
export function assertScreen(screen: string, expected: RegExp, message: string): void {
  if (!expected.test(screen)) throw new ScreenError(`${message}: ${expected} is not on screen`, screen);
}
