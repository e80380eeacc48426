// Build the widget's ESM bundle into ../dgviz/static/ (committed, so `pip install -e .` needs no
// Node). Everything is bundled: no CDN imports (offline HTML and air-gapped kernels must work).
import { build, context } from "esbuild";

const options = {
  entryPoints: { widget: "src/index.js" },
  outdir: "../dgviz/static",
  bundle: true,
  format: "esm",
  target: "es2020",
  minify: true,
  legalComments: "none",
  // UMD dependencies must not take an AMD path in Jupyter pages that have require.js
  // (manzt/anywidget#369). We have no dependencies today; keep it for the day we do.
  define: { "define.amd": "false" },
  logLevel: "info",
};

if (process.argv.includes("--watch")) {
  const ctx = await context({ ...options, minify: false, sourcemap: "inline" });
  await ctx.watch();
} else {
  await build(options);
}
