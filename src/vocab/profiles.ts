// The capability profiles a session may be created with. What each keeps,
// and why, is src/isolation/profiles.ts. A leaf.

export const PROFILES = ['workspace', 'strict'] as const;
export type Profile = (typeof PROFILES)[number];
