// Frames read lazily: an RGBA image whose pixels are there once `fill(part)` has read them, the part
// [x0, y0, x1, y1] a crop or a look needs (crop.js `warpSource`) or, without one, all of them (the detector, a
// saved frame). A tracked frame reads only around its faces: reading all 640 x 480 costs more than its crops.

// A buffer for a width x height frame's pixels: `buffer` where it is one, else a new one. One row longer than
// the pixels: VideoFrame.copyTo asks a whole stride of room after a part's last row.
export function frameBuffer(width, height, buffer = null) {
  const size = (height + 1) * width * 4;
  return buffer?.length === size ? buffer : new Uint8ClampedArray(size);
}

// The image of a width x height frame that `read(image, x, y, w, h)` reads into `data` (`buffer`, which the
// caller may keep from frame to frame), a part at a time.
export function lazyFrame(width, height, read, buffer = frameBuffer(width, height)) {
  let whole = false;
  return {width, height, channels: 4, data: buffer,
    async fill(part = null) {
      if (whole) return;
      whole = !part;
      const [x0, y0, x1, y1] = part ?? [0, 0, width, height];
      const [x, y] = [x0 - (x0 % 2), y0 - (y0 % 2)];   // an even corner: a video frame's 2 x 2 pixels share their colour
      if (x1 > x && y1 > y) await read(this, x, y, x1 - x, y1 - y);
    }};
}

// Reads a VideoFrame's pixels, converted to RGBA, straight into the image's buffer.
export function videoReader(frame) {
  const {x: left, y: top} = frame.visibleRect;
  return (image, x, y, w, h) => frame.copyTo(image.data, {rect: {x: left + x, y: top + y, width: w, height: h}, format: "RGBA",
    layout: [{offset: (y * image.width + x) * 4, stride: image.width * 4}]});
}

// Reads a canvas's pixels (all of them in place of the buffer).
export function canvasReader(context) {
  return (image, x, y, w, h) => {
    const part = context.getImageData(x, y, w, h).data;
    if (w === image.width && h === image.height) image.data = part;
    else for (let r = 0; r < h; r++) image.data.set(part.subarray(r * w * 4, (r + 1) * w * 4), ((y + r) * image.width + x) * 4);
  };
}
