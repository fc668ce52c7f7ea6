// `lockbox completions bash|zsh|fish`: a completion script for the shell,
// made from the program's own commands and options, so it never falls
// behind them. Words that are not commands or options complete as files.

import type { Command } from "commander";
import { _print } from "./_output.ts";

/** One command path's completions: its subcommands and its options. */
interface _Node {
  /** The subcommand names from the top, such as `["store", "get"]`. */
  path: string[];
  subs: { name: string; about: string }[];
  options: { flag: string; about: string }[];
}

const _SHELLS = ["bash", "zsh", "fish"] as const;

/** Adds `lockbox completions` to the program (after every other command). */
export function _addCompletions(program: Command): void {
  program.command("completions")
    .description(
      "Print a completion script for bash, zsh or fish (source <(lockbox completions bash))",
    )
    .argument("<shell>", "bash, zsh or fish")
    .action((shell: string, _options, command: Command) => {
      if (!(_SHELLS as readonly string[]).includes(shell)) {
        command.error(
          `error: cannot complete for '${shell}': expected bash, zsh or fish`,
        );
      }
      const nodes = _nodes(program, []);
      _print(
        shell === "bash"
          ? _bash(nodes)
          : shell === "zsh"
          ? _zsh(nodes)
          : _fish(nodes),
      );
    });
}

function _nodes(command: Command, path: string[]): _Node[] {
  const subs = command.commands.filter((sub) => sub.name() !== "help");
  const options = command.options
    .filter((option) => !option.hidden)
    .flatMap((option) =>
      [option.long, option.short].filter((flag): flag is string =>
        flag !== undefined
      ).map((flag) => ({ flag, about: option.description }))
    );
  options.push({ flag: "--help", about: "display help for command" });
  return [
    {
      path,
      subs: subs.map((sub) => ({ name: sub.name(), about: sub.description() })),
      options,
    },
    ...subs.flatMap((sub) => _nodes(sub, [...path, sub.name()])),
  ];
}

/** The `case` pattern of a command path, as the scripts spell it. */
function _key(path: string[]): string {
  return path.map((name) => ` ${name}`).join("");
}

/** `text` in single quotes for sh and zsh. */
function _quote(text: string): string {
  return `'${text.replaceAll("'", `'\\''`)}'`;
}

/** The first sentence of a description, short enough for a menu. */
function _brief(about: string): string {
  const first = about.split(/[.;(:]/)[0].trim();
  return first.length > 70 ? `${first.slice(0, 69)}…` : first;
}

function _bash(nodes: _Node[]): string {
  const steps = nodes.flatMap((node) =>
    node.subs.map((sub) => `"${_key(node.path)}:${sub.name}"`)
  );
  const words = nodes.map((node) =>
    `    ${_quote(_key(node.path))}) subs=${
      _quote(node.subs.map((s) => s.name).join(" "))
    }; opts=${_quote(node.options.map((o) => o.flag).join(" "))} ;;`
  );
  return `# bash completion for lockbox: source <(lockbox completions bash)
_lockbox() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" path="" word i subs="" opts=""
  for ((i = 1; i < COMP_CWORD; i++)); do
    word="\${COMP_WORDS[i]}"
    case "$path:$word" in
      ${steps.join("|")}) path="$path $word" ;;
    esac
  done
  case "$path" in
${words.join("\n")}
  esac
  if [[ "$cur" == -* ]]; then
    COMPREPLY=($(compgen -W "$opts" -- "$cur"))
  elif [[ -n "$subs" ]]; then
    COMPREPLY=($(compgen -W "$subs" -- "$cur"))
  else
    COMPREPLY=()
  fi
}
complete -o default -F _lockbox lockbox`;
}

function _zsh(nodes: _Node[]): string {
  const steps = nodes.flatMap((node) =>
    node.subs.map((sub) => `"${_key(node.path)}:${sub.name}"`)
  );
  const words = nodes.map((node) =>
    `    (${_quote(_key(node.path))}) subs=(${
      node.subs.map((s) => _quote(`${s.name}:${_brief(s.about)}`)).join(" ")
    }); opts=(${node.options.map((o) => o.flag).join(" ")}) ;;`
  );
  return `#compdef lockbox
# zsh completion for lockbox: source <(lockbox completions zsh) after
# compinit, or save it as _lockbox in a directory on $fpath.
_lockbox() {
  local cmdpath="" word i
  local -a subs opts
  for ((i = 2; i < CURRENT; i++)); do
    word="\${words[i]}"
    case "$cmdpath:$word" in
      (${steps.join("|")}) cmdpath="$cmdpath $word" ;;
    esac
  done
  case "$cmdpath" in
${words.join("\n")}
  esac
  if [[ "\${words[CURRENT]}" == -* ]]; then
    compadd -- $opts
  elif (( \${#subs} )); then
    _describe -t commands 'lockbox command' subs
  else
    _files
  fi
}
if [[ "\${zsh_eval_context[-1]}" == loadautofunc ]]; then
  _lockbox "$@"
else
  compdef _lockbox lockbox
fi`;
}

/** `text` in single quotes for fish. */
function _fishQuote(text: string): string {
  return `'${text.replaceAll("\\", "\\\\").replaceAll("'", "\\'")}'`;
}

function _fish(nodes: _Node[]): string {
  const steps = nodes.flatMap((node) =>
    node.subs.map((sub) => _fishQuote(`${_key(node.path)}:${sub.name}`))
  );
  const lines: string[] = [];
  for (const node of nodes) {
    const at = `-n ${_fishQuote(`__lockbox_at ${_quote(_key(node.path))}`)}`;
    for (const sub of node.subs) {
      lines.push(
        `complete -c lockbox ${at} -f -a ${_fishQuote(sub.name)} -d ${
          _fishQuote(_brief(sub.about))
        }`,
      );
    }
    for (const option of node.options) {
      const flag = option.flag.startsWith("--")
        ? `-l ${_fishQuote(option.flag.slice(2))}`
        : `-s ${_fishQuote(option.flag.slice(1))}`;
      lines.push(
        `complete -c lockbox ${at} ${flag} -d ${
          _fishQuote(_brief(option.about))
        }`,
      );
    }
  }
  return `# fish completion for lockbox: lockbox completions fish | source, or
# save it as ~/.config/fish/completions/lockbox.fish
function __lockbox_path
    set -l path ""
    for word in (commandline -opc)[2..-1]
        switch "$path:$word"
            case ${steps.join(" ")}
                set path "$path $word"
        end
    end
    echo $path
end
function __lockbox_at
    set -l path (__lockbox_path)
    test "$path" = "$argv[1]"
end
${lines.join("\n")}`;
}
