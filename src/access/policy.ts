// Who may do what: rules per uid and per gid, per action, with a `self`
// scope for a caller's own sessions. Root is always allowed; deny wins over
// allow; a non-root caller no rule allows is denied. Pure: the decision and
// the rule that made it, for the audit trail.
import { z } from 'zod';

import { ACTIONS, type Action } from '../vocab/actions.js';
import { PROFILES, UNGRANTED_PROFILES, type Profile } from '../vocab/profiles.js';

export { ACTIONS, type Action };

const actionPattern = z
  .string()
  .refine((a) => a === '*' || (ACTIONS as readonly string[]).includes(a) || (a.endsWith('.*') && ACTIONS.some((x) => x.startsWith(a.slice(0, -1)))), {
    message: `must be an action (${ACTIONS.join(', ')}), a family like session.* or auth.*, or *`,
  });

const id = z.number().int().min(0).max(4294967294);

export const ruleSchema = z
  .object({
    /** A label for the audit trail; rules[i] if absent. */
    name: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'must be 1-64 of [A-Za-z0-9_.-]').optional(),
    uids: z.array(id).max(1024).default([]),
    gids: z.array(id).max(1024).default([]),
    actions: z.array(actionPattern).min(1).max(64),
    /** self: only sessions the caller owns (create and list: its own). */
    scope: z.enum(['self', 'all']).default('all'),
    effect: z.enum(['allow', 'deny']).default('allow'),
    /**
     * The profiles an allow rule for session.create lets its callers' sessions
     * have; without it, workspace and strict. The only way a non-root caller
     * gets system.
     */
    profiles: z.array(z.enum(PROFILES)).min(1).max(PROFILES.length).optional(),
  })
  .strict()
  .refine((r) => r.uids.length + r.gids.length > 0, 'names no uid and no gid: it would match nobody')
  .refine((r) => r.profiles === undefined || (r.effect === 'allow' && r.actions.some((a) => matches(a, 'session.create'))), 'profiles belongs on an allow rule for session.create (or session.*, or *)');
export type Rule = z.infer<typeof ruleSchema>;

export interface Principal {
  uid: number;
  gids: number[];
}

export interface Decision {
  allow: boolean;
  /** What decided: "root", the rule's name or rules[i], or "default". */
  rule: string;
  /** For an allow: whether the caller may act on anyone's objects ("all") or only its own ("self"). */
  scope: 'self' | 'all';
}

const matches = (pattern: string, action: Action) => pattern === '*' || pattern === action || (pattern.endsWith('.*') && action.startsWith(pattern.slice(0, -1)));

/**
 * `owner` is the owner uid of the target object (a session, volume or
 * secret); undefined when there is none (create, list, events): then a
 * `self` rule applies, and the decision's scope says how far a listing goes.
 */
export function decide(rules: readonly Rule[], who: Principal, action: Action, owner?: number | null): Decision {
  if (who.uid === 0) return { allow: true, rule: 'root', scope: 'all' };
  const label = (r: Rule, i: number) => r.name ?? `rules[${i}]`;
  const applicable = rules
    .map((r, i) => ({ r, i }))
    .filter(({ r }) => (r.uids.includes(who.uid) || r.gids.some((g) => who.gids.includes(g))) && r.actions.some((a) => matches(a, action)));
  const inScope = (r: Rule) => r.scope === 'all' || owner === undefined || owner === who.uid;
  const deny = applicable.find(({ r }) => r.effect === 'deny' && inScope(r));
  if (deny) return { allow: false, rule: label(deny.r, deny.i), scope: 'self' };
  // An "all" rule first: a listing may then show everyone's objects.
  const allows = applicable.filter(({ r }) => r.effect === 'allow' && inScope(r));
  const allow = allows.find(({ r }) => r.scope === 'all') ?? allows[0];
  if (allow) return { allow: true, rule: label(allow.r, allow.i), scope: allow.r.scope };
  return { allow: false, rule: 'default', scope: 'self' };
}

/**
 * Whether a caller's session may have `profile`: root always; anyone else
 * through an allow rule for session.create that is theirs and lists it in
 * `profiles` (workspace and strict when it lists none). Deny rules for
 * session.create are decide()'s: this only says which profiles an allowed
 * create may ask for.
 */
export function grantsProfile(rules: readonly Rule[], who: Principal, profile: Profile): { allow: boolean; rule: string } {
  if (who.uid === 0) return { allow: true, rule: 'root' };
  const i = rules.findIndex(
    (r) =>
      r.effect === 'allow' &&
      (r.uids.includes(who.uid) || r.gids.some((g) => who.gids.includes(g))) &&
      r.actions.some((a) => matches(a, 'session.create')) &&
      (r.profiles ?? UNGRANTED_PROFILES).includes(profile),
  );
  if (i < 0) return { allow: false, rule: 'profiles' };
  return { allow: true, rule: rules[i]!.name ?? `rules[${i}]` };
}
