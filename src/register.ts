/**
 * `node --import floe/register …` lets plain Node import TypeScript files, the way floe loads
 * pipeline modules (tsx), so a project's `*.test.ts` runs under `node --test` on every Node floe
 * supports, with nothing else installed.
 *
 * @example
 * // package.json of a floe project
 * // "scripts": { "test": "node --import floe/register --test pipelines/*.test.ts" }
 */
import { enableTypeScript } from "./project/load.js";

enableTypeScript();
