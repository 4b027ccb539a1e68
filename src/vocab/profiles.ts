// The capability profiles a session may be created with. What each keeps,
// and why, is src/isolation/profiles.ts. A leaf.

export const PROFILES = ['workspace', 'strict', 'system'] as const;
export type Profile = (typeof PROFILES)[number];

/** Profiles a caller may ask for without an access rule naming them (system needs one: access.rules[].profiles). */
export const UNGRANTED_PROFILES: readonly Profile[] = ['workspace', 'strict'];
