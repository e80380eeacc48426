// ESLint flat config: the recommended rules, a 100-column line limit, and no way to put HTML
// built from strings into the page (token text is untrusted model output).
import js from "@eslint/js";
import stylistic from "@stylistic/eslint-plugin";
import globals from "globals";

const noHtml = ["innerHTML", "outerHTML", "insertAdjacentHTML", "write", "writeln"].map(
  (property) => ({ selector: `MemberExpression[property.name="${property}"]`,
    message: `${property}: write untrusted text with textContent / createTextNode only.` }));

export default [
  { ignores: ["node_modules/"] },
  js.configs.recommended,
  {
    plugins: { "@stylistic": stylistic },
    rules: {
      "@stylistic/max-len": ["error", { code: 100, ignoreUrls: true }],
      "no-restricted-syntax": ["error", ...noHtml],
      "no-unused-vars": ["error", { caughtErrors: "none" }],
    },
  },
  { files: ["src/**/*.js"], languageOptions: { globals: globals.browser } },
  { files: ["*.js", "*.mjs", "test/**/*.js"], languageOptions: { globals: globals.node } },
];
