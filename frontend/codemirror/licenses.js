// Writes ../../campaigns/static/campaigns/vendor/codemirror/LICENSES.txt: the licence of every package in the
// bundle (the lockfile's runtime packages; esbuild, a build tool only, is not in it).
const fs = require("fs");
const path = require("path");
const lock = require("./package-lock.json");
const out = [];
for (const [where, info] of Object.entries(lock.packages)) {
  if (!where || info.dev) continue;
  const dir = path.join(__dirname, where);
  const file = fs.readdirSync(dir).find((name) => /^(licen[cs]e|copying)(\.|$)/i.test(name));
  if (!file) throw new Error(`${where} has no licence file`);
  const name = where.replace(/^node_modules\//, "");
  out.push(`${"=".repeat(78)}\n${name} ${info.version} (${info.license})\n${"=".repeat(78)}\n`
           + fs.readFileSync(path.join(dir, file), "utf8").trim() + "\n");
}
const target = path.join(__dirname, "../../campaigns/static/campaigns/vendor/codemirror/LICENSES.txt");
fs.writeFileSync(target, out.join("\n"));
console.log(`${target}: ${out.length} licences`);
