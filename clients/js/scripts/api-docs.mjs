// Writes docs/api.md, the API reference, from the package's type declarations (dist/esm/*.d.ts,
// so `npm run build` first) and their TSDoc comments: what each entry point exports, each
// public member with its signature and its doc comment. `npm run docs` runs it; a test checks
// the committed file is current.
import ts from 'typescript';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const ENTRIES = [
  ['@ferrocast/client', 'index'],
  ['@ferrocast/client/react', 'react'],
  ['@ferrocast/client/msgpack', 'msgpack'],
  ['@ferrocast/client/encrypt', 'encrypt'],
];

/** The reference, as Markdown, and the exports that have no doc comment. */
export function apiReference() {
  const undocumented = [];
  const files = ENTRIES.map(([, file]) => path.join(here, 'dist/esm', `${file}.d.ts`));
  const program = ts.createProgram(files, { strict: true, skipLibCheck: true, types: [] });
  const checker = program.getTypeChecker();
  const printer = ts.createPrinter({ removeComments: true, newLine: ts.NewLineKind.LineFeed });
  const out = [
    '# @ferrocast/client API reference',
    '',
    'Generated from the type declarations and their doc comments by `npm run docs`',
    '(scripts/api-docs.mjs): edit the comments in `src/`, not this file.',
    '',
  ];
  const doc = (node) =>
    (node.jsDoc ?? [])
      .map((d) => (typeof d.comment === 'string' ? d.comment : ts.getTextOfJSDocComment(d.comment) ?? ''))
      .join('\n')
      .trim();
  const tags = (node) => (node.jsDoc ?? []).flatMap((d) => d.tags ?? []).map((t) => t.tagName.text);
  const internal = (node) => tags(node).includes('internal');
  const print = (node) => printer.printNode(ts.EmitHint.Unspecified, node, node.getSourceFile()).trim();
  const hidden = (member) =>
    internal(member) ||
    ts.getCombinedModifierFlags(member) & (ts.ModifierFlags.Private | ts.ModifierFlags.Protected) ||
    (member.name && ts.isPrivateIdentifier(member.name));
  const members = (node) => {
    for (const member of node.members.filter((m) => !hidden(m))) {
      const text = doc(member);
      out.push(`- \`${print(member).replace(/;$/, '').replace(/\s+/g, ' ')}\`${text ? `: ${text.replace(/\n/g, ' ')}` : ''}`);
    }
    out.push('');
  };

  for (const [specifier, file] of ENTRIES) {
    const source = program.getSourceFile(path.join(here, 'dist/esm', `${file}.d.ts`));
    out.push(`## \`${specifier}\``, '');
    const moduleDoc = source.statements[0]?.jsDoc?.find((d) => d.tags?.some((t) => t.tagName.text === 'packageDocumentation'));
    if (moduleDoc) out.push(ts.getTextOfJSDocComment(moduleDoc.comment).trim(), '');
    const symbols = checker.getExportsOfModule(checker.getSymbolAtLocation(source));
    for (const exported of symbols) {
      const symbol = exported.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(exported) : exported;
      for (const node of symbol.declarations ?? []) {
        if (internal(node)) continue;
        const kind = ts.isClassDeclaration(node)
          ? 'class'
          : ts.isInterfaceDeclaration(node)
            ? 'interface'
            : ts.isTypeAliasDeclaration(node)
              ? 'type'
              : ts.isFunctionDeclaration(node)
                ? 'function'
                : 'const';
        out.push(`### ${kind} \`${exported.name}\``, '');
        const text = doc(ts.isVariableDeclaration(node) ? node.parent.parent : node);
        if (text) out.push(text, '');
        else undocumented.push(`${specifier} ${exported.name}`);
        if (ts.isClassDeclaration(node) || ts.isInterfaceDeclaration(node)) {
          const heritage = (node.heritageClauses ?? []).map((h) => h.getText()).join(' ');
          const params = node.typeParameters ? `<${node.typeParameters.map((p) => p.getText()).join(', ')}>` : '';
          out.push('```ts', `${kind} ${exported.name}${params}${heritage ? ` ${heritage}` : ''}`, '```', '');
          members(node);
        } else {
          const shown = ts.isVariableDeclaration(node) ? `const ${print(node)}` : print(node);
          out.push('```ts', shown.replace(/^export (declare )?/, ''), '```', '');
        }
      }
    }
  }
  return { text: out.join('\n').replace(/\n{3,}/g, '\n\n'), undocumented };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  writeFileSync(path.join(here, 'docs/api.md'), apiReference().text);
  console.log('wrote docs/api.md');
}
