// The capability profiles a session may be created with. What each keeps,
// and why, is src/isolation/profiles.ts. A leaf.

export const PROFILES = ['workspace', 'strict', 'system'] as const;
export type Profile = (typeof PROFILES)[number];

/** What a session may boot as its init besides Enclave's own (--init; system profile only: src/isolation/bootPlan.ts). */
export const INITS = ['systemd'] as const;
export type Init = (typeof INITS)[number];

/** Profiles a caller may ask for without an access rule naming them (system needs one: access.rules[].profiles). */
export const UNGRANTED_PROFILES: readonly Profile[] = ['workspace', 'strict'];
