// The Analytics page is drawn by the server (an SVG chart and tables);
// this module only brings the layout's shared behaviour (logout).
import './common.js';
