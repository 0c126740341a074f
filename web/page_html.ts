/**
 * The page of `serve` (its `index.html`): a module, so that `serve` imports it wherever the
 * framework comes from (a checkout or an `https:` URL) with the permissions it already has.
 *
 * @module
 */

/** The page's HTML; it loads `app.js`, the bundle of `web/app.ts`. */
export const PAGE_HTML = `<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <link rel="icon" href="data:,">
    <title>mi-ssl: segment a scan in the browser</title>
    <style>
    body {
      font: 14px system-ui, sans-serif;
      margin: 1em 2em;
      color: #222;
    }
    h1 {
      font-size: 1.3em;
    }
    #drop {
      border: 2px dashed #999;
      padding: 1em;
      border-radius: 6px;
      margin-bottom: 0.8em;
    }
    #status {
      color: #555;
    }
    #error {
      color: #b00;
      font-weight: bold;
    }
    main {
      display: flex;
      gap: 2em;
      align-items: flex-start;
    }
    canvas {
      width: 400px;
      image-rendering: pixelated;
      background: #000;
    }
    label {
      display: block;
      margin: 0.3em 0;
    }
    input[type=range] {
      width: 200px;
      vertical-align: middle;
    }
    .swatch {
      display: inline-block;
      width: 1em;
      height: 1em;
      vertical-align: middle;
    }
    td {
      padding: 0.1em 0.6em 0.1em 0;
    }
    .num {
      text-align: right;
    }
    </style>
  </head>
  <body>
    <h1>Segment a scan in the browser</h1>
    <p id="model">loading...</p>
    <div id="drop">Open a scan: NIfTI (<code>.nii</code>, <code>.nii.gz</code>) or MetaImage
  (<code>.mha</code>, or a <code>.mhd</code> with its data file: select or drop both)
  <input type="file" id="file" multiple accept=".nii,.gz,.mha,.mhd,.raw,.zraw"> or drop it here.
  It is read and segmented on this computer; nothing is uploaded.</div>
    <p id="status">starting</p>
    <p id="error"></p>
    <main>
      <div>
        <canvas id="canvas" width="1" height="1"></canvas>
      </div>
      <div>
        <label><span id="slice-label">slice</span><br><input type="range" id="slice" min="0" max="0" value="0"></label>
        <label>window<br><input type="range" id="window" min="1" max="100" value="100"></label>
        <label>level<br><input type="range" id="level" min="0" max="100" value="50"></label>
        <label>overlay opacity<br><input type="range" id="opacity" min="0" max="100" value="50"></label>
        <table>
          <tbody id="legend"></tbody>
        </table>
        <p><a id="download" hidden>download the prediction (NIfTI, on the scan's grid)</a></p>
      </div>
    </main>
    <script type="module" src="app.js"></script>
  </body>
</html>
`;
