// The map view: the raster and its predicted map as two image layers of a Leaflet map
// (vendored in vendor/leaflet, loaded as a classic script: the global L), so the analyst
// pans (drag, arrow keys) and zooms (wheel, +/-, the buttons) over the full image. The
// legend, the palette and the opacity slider sit in a panel inside the map, so they stay
// in view with the map at any window size.

const L = window.L;
let map = null;
let base = null;
let overlay = null;

/** Build the map once, with the page's panel (#map-panel) as a control in its corner. */
function ensureMap() {
  if (map) return map;
  // no zoom animation: the layers are plain images, and the view is exact the moment a zoom ends
  map = L.map("map", { crs: L.CRS.Simple, minZoom: -6, maxZoom: 5, zoomSnap: 0.25, zoomAnimation: false, attributionControl: false });
  const Panel = L.Control.extend({
    onAdd() {
      const panel = document.getElementById("map-panel");
      L.DomEvent.disableClickPropagation(panel);
      L.DomEvent.disableScrollPropagation(panel);
      return panel;
    },
  });
  new Panel({ position: "topright" }).addTo(map);
  return map;
}

/**
 * Show a raster (`baseUrl`, its full size `width`×`height`) with the map over it.
 * @param {{baseUrl: string, overlayUrl: string, width: number, height: number, opacity: number}} view
 */
export function showMap({ baseUrl, overlayUrl, width, height, opacity }) {
  const m = ensureMap();
  const bounds = [[0, 0], [height, width]];
  if (base) base.remove();
  if (overlay) overlay.remove();
  base = L.imageOverlay(baseUrl, bounds, { alt: "The uploaded raster" }).addTo(m);
  overlay = L.imageOverlay(overlayUrl, bounds, { opacity, className: "class-map", alt: "Predicted land-cover map" }).addTo(m);
  m.invalidateSize();
  m.setMaxBounds(L.latLngBounds(bounds).pad(0.5));
  m.fitBounds(bounds);
}

/** Replace the overlay's image (another palette), keeping the view. */
export function setOverlayUrl(url) {
  if (overlay) overlay.setUrl(url);
}

export function setOpacity(value) {
  if (overlay) overlay.setOpacity(value);
}

/** For scripted checks: the Leaflet map (zoom, centre) and the overlay's image element. */
export function mapState() {
  if (!map) return null;
  const c = map.getCenter();
  return { zoom: map.getZoom(), center: [c.lat, c.lng], overlay: overlay ? overlay.getElement() : null };
}
