/** Where test daemons' run dirs live (and the run's cache of base layers, baseSeed.ts). */
export const RUNS_DIR = '/var/tmp/enclave-it';
