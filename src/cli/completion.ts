// Shell completion scripts made from the command table: `enclave completion
// bash` and `enclave completion zsh` (zsh runs the same function through its
// bashcompinit). The table is compiled into case statements, so completing a
// command or a flag runs no process; names of sessions, volumes and secrets
// come from the daemon (`enclave __complete KIND`).
import { COMMANDS, GLOBAL_FLAGS, keyOf, type CommandSpec, type Complete, type FlagSpec } from './commandTable.js';

/** A word safe inside double quotes in a case pattern (the table's words are plain; this keeps it so). */
function q(word: string): string {
  if (!/^[A-Za-z0-9_.:,|@\-\[\]\/ #]*$/.test(word)) throw new Error(`completion: '${word}' is not a plain word`);
  return `"${word}"`;
}

function kindOf(c: Complete | undefined): string {
  if (c === undefined) return 'none';
  return typeof c === 'string' ? c : `words:${c.join(' ')}`;
}

/** Every spelling of a command: its words, and its last word's aliases. */
function spellings(c: CommandSpec): string[] {
  return [keyOf(c), ...(c.aliases ?? []).map((a) => [...c.words.slice(0, -1), a].join(' '))];
}

const flagWords = (f: FlagSpec) => [`--${f.long}`, ...(f.short ? [`-${f.short}`] : []), ...(f.aliases ?? []).map((a) => `--${a}`)];

function bash(): string {
  const visible = COMMANDS.filter((c) => !c.hidden);
  // Next words after a prefix of words ("" -> top level, "session" -> its commands).
  const next = new Map<string, Set<string>>();
  for (const c of visible)
    for (const s of spellings(c)) {
      const w = s.split(' ');
      for (let i = 0; i < w.length; i++) {
        const prefix = w.slice(0, i).join(' ');
        next.set(prefix, (next.get(prefix) ?? new Set()).add(w[i]!));
      }
    }
  const resolve = COMMANDS.flatMap((c) => spellings(c).map((s) => `    ${q(s)}) echo ${q(keyOf(c))} ;;`));
  const nextCases = [...next].map(([p, ws]) => `    ${q(p)}) echo ${q([...ws].join(' '))} ;;`);
  const flagCases = COMMANDS.map((c) => `    ${q(keyOf(c))}) echo ${q([...c.flags, ...GLOBAL_FLAGS].flatMap(flagWords).join(' '))} ;;`);
  const kindCases: string[] = [];
  for (const c of COMMANDS) {
    const k = keyOf(c);
    for (const f of [...c.flags, ...GLOBAL_FLAGS]) if (f.value) kindCases.push(`    ${flagWords(f).map((w) => q(`${k}|${w}`)).join('|')}) echo ${q(kindOf(f.complete))} ;;`);
    c.args.forEach((a, i) => kindCases.push(`    ${q(`${k}|#${i}`)}) echo ${q(kindOf(a.complete))} ;;`));
    if (c.trailing) kindCases.push(`    ${q(`${k}|#trailing`)}) echo ${q(kindOf(c.trailing.complete))} ;;`);
  }
  return `# enclave completion for bash (zsh: through bashcompinit), made by
# \`enclave completion bash\` from the CLI's command table. Load it with
#   source <(enclave completion bash)
_enclave_resolve() {
  case "$1" in
${resolve.join('\n')}
  esac
}
_enclave_next() {
  case "$1" in
${nextCases.join('\n')}
  esac
}
_enclave_flags() {
  case "$1" in
${flagCases.join('\n')}
  esac
}
# What a flag's value or an argument completes to; empty for a flag without a value.
_enclave_kind() {
  case "$1|$2" in
    "|--socket") echo file ;;
${kindCases.join('\n')}
  esac
}
_enclave_complete_kind() {
  local kind="$1" cur="$2"
  case "$kind" in
    session|volume|secret) COMPREPLY=( $(compgen -W "$(command enclave \${_enclave_socket:+--socket "$_enclave_socket"} __complete "$kind" 2>/dev/null)" -- "$cur") ) ;;
    file) COMPREPLY=( $(compgen -f -- "$cur") ) ;;
    dir) COMPREPLY=( $(compgen -d -- "$cur") ) ;;
    command) COMPREPLY=( $(compgen -c -- "$cur") ) ;;
    words:*) COMPREPLY=( $(compgen -W "\${kind#words:}" -- "$cur") ) ;;
    *) COMPREPLY=() ;;
  esac
}
_enclave() {
  # zsh's bashcompinit hands over a 1-based COMP_WORDS; words are counted from 0 here.
  local base=0
  [[ -n \${ZSH_VERSION-} ]] && base=1
  # "typed", not "path": zsh ties that name to PATH.
  local cur="\${COMP_WORDS[COMP_CWORD + base]}" i w typed="" cmd="" nargs=0 want="" trailing=0
  local _enclave_socket=""
  COMPREPLY=()
  for ((i = 1; i < COMP_CWORD; i++)); do
    w="\${COMP_WORDS[i + base]}"
    if [[ -n $want ]]; then
      [[ $want == socket ]] && _enclave_socket="$w"
      want=""
      continue
    fi
    if ((trailing)); then nargs=$((nargs + 1)); continue; fi
    if [[ -z $cmd ]]; then
      case "$w" in
        --socket) want=socket; continue ;;
        -*) continue ;;
      esac
      typed="\${typed:+$typed }$w"
      cmd="$(_enclave_resolve "$typed")"
      continue
    fi
    # "daemon" then "reload": the longer command wins while no argument is given.
    if ((nargs == 0)) && [[ $w != -* ]] && [[ -n "$(_enclave_resolve "$cmd $w")" ]]; then cmd="$(_enclave_resolve "$cmd $w")"; continue; fi
    case "$w" in
      --) [[ -n "$(_enclave_kind "$cmd" "#trailing")" ]] && trailing=1; continue ;;
      --*=*) continue ;;
      -*)
        if [[ -n "$(_enclave_kind "$cmd" "$w")" ]]; then want=value; fi
        [[ $w == --socket ]] && want=socket
        continue ;;
    esac
    if [[ -n "$(_enclave_kind "$cmd" "#trailing")" && -z "$(_enclave_kind "$cmd" "#$nargs")" ]]; then trailing=1; fi
    nargs=$((nargs + 1))
  done
  if [[ -n $want ]]; then
    _enclave_complete_kind "$(_enclave_kind "$cmd" "\${COMP_WORDS[COMP_CWORD - 1 + base]}")" "$cur"
    return 0
  fi
  if [[ -z $cmd ]]; then
    if [[ $cur == -* ]]; then COMPREPLY=( $(compgen -W "--socket --help --version" -- "$cur") ); return 0; fi
    COMPREPLY=( $(compgen -W "$(_enclave_next "$typed")" -- "$cur") )
    return 0
  fi
  if ((trailing)); then
    if ((nargs == $(_enclave_args "$cmd"))); then _enclave_complete_kind command "$cur"; else COMPREPLY=( $(compgen -f -- "$cur") ); fi
    return 0
  fi
  if [[ $cur == -* ]]; then COMPREPLY=( $(compgen -W "$(_enclave_flags "$cmd")" -- "$cur") ); return 0; fi
  local kind
  kind="$(_enclave_kind "$cmd" "#$nargs")"
  if [[ -z $kind && -n "$(_enclave_kind "$cmd" "#trailing")" ]]; then kind=command; fi
  if ((nargs == 0)) && [[ -n "$(_enclave_next "$cmd")" ]]; then
    COMPREPLY=( $(compgen -W "$(_enclave_next "$cmd")" -- "$cur") )
    [[ -n $kind ]] || return 0
  fi
  _enclave_complete_kind "$kind" "$cur"
  return 0
}
_enclave_args() {
  case "$1" in
${COMMANDS.map((c) => `    ${q(keyOf(c))}) echo ${c.args.length} ;;`).join('\n')}
  esac
}
complete -o default -F _enclave enclave
`;
}

/** The script for SHELL, or undefined for a shell it does not support. */
export function completionScript(shell: string): string | undefined {
  if (shell === 'bash') return bash();
  if (shell === 'zsh') return `#compdef enclave\n# enclave completion for zsh: the bash function through zsh's bashcompinit.\n# Load it with: source <(enclave completion zsh)\n# compinit only where the shell has not run it (-i: insecure directories are skipped, never used).\n(( $+functions[compdef] )) || { autoload -U +X compinit && compinit -i; }\nautoload -U +X bashcompinit && bashcompinit\n${bash()}`;
  return undefined;
}
