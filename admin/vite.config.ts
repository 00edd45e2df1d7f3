import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

// Served under /admin/ by `spine local` and from the CloudFront distribution's
// /admin/* behaviour, so every asset URL carries that prefix.
export default defineConfig({
  base: "/admin/",
  plugins: [react()],
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2022",
    // No inline scripts or styles in index.html: the served CSP forbids them.
    modulePreload: { polyfill: false },
    assetsInlineLimit: 0,
    sourcemap: false,
  },
});
