#!/usr/bin/env node
import { main } from "../dist/cli/main.js";

const code = await main(process.argv.slice(2));
// Exit once output is flushed: a step interrupted at shutdown may still hold timers or sockets.
process.stdout.write("", () => process.stderr.write("", () => process.exit(code)));
