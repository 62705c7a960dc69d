;; cv2.resize's INTER_AREA for crop.js, in WebAssembly SIMD: a pixel's three channels (and one unused) in one
;; f32x4, summed with float32 multiplies and adds in OpenCV's order, so the result is OpenCV's to the bit.
;; Built into area.wasm by scripts/vendor_web.py (wabt). Addresses are bytes in the exported memory; taps are
;; areaTaps' arrays (first: i32, count + 1; source: i32; weight: f32).
(module
  (memory (export "memory") 1)

  ;; Each of `rows` source rows (at src, `stride` bytes apart, `ch` bytes a pixel) summed across into `width`
  ;; f32x4 (at out, row after row): pixel x is sum over its taps i of source[i]'s pixel times weight[i].
  (func (export "across") (param $src i32) (param $stride i32) (param $ch i32) (param $rows i32) (param $width i32)
        (param $first i32) (param $source i32) (param $weight i32) (param $out i32)
    (local $r i32) (local $x i32) (local $i i32) (local $end i32) (local $row i32) (local $acc v128)
    (block $rows_done
      (loop $each_row
        (br_if $rows_done (i32.ge_u (local.get $r) (local.get $rows)))
        (local.set $row (i32.add (local.get $src) (i32.mul (local.get $r) (local.get $stride))))
        (local.set $x (i32.const 0))
        (block $row_done
          (loop $each_x
            (br_if $row_done (i32.ge_u (local.get $x) (local.get $width)))
            (local.set $acc (v128.const f32x4 0 0 0 0))
            (local.set $i (i32.load (i32.add (local.get $first) (i32.shl (local.get $x) (i32.const 2)))))
            (local.set $end (i32.load offset=4 (i32.add (local.get $first) (i32.shl (local.get $x) (i32.const 2)))))
            (block $taps_done
              (loop $each_tap
                (br_if $taps_done (i32.ge_s (local.get $i) (local.get $end)))
                (local.set $acc
                  (f32x4.add (local.get $acc)
                    (f32x4.mul
                      (f32x4.convert_i32x4_u
                        (i32x4.extend_low_i16x8_u
                          (i16x8.extend_low_i8x16_u
                            (v128.load32_zero
                              (i32.add (local.get $row)
                                (i32.mul (i32.load (i32.add (local.get $source) (i32.shl (local.get $i) (i32.const 2))))
                                         (local.get $ch)))))))
                      (f32x4.splat (f32.load (i32.add (local.get $weight) (i32.shl (local.get $i) (i32.const 2))))))))
                (local.set $i (i32.add (local.get $i) (i32.const 1)))
                (br $each_tap)))
            (v128.store (local.get $out) (local.get $acc))
            (local.set $out (i32.add (local.get $out) (i32.const 16)))
            (local.set $x (i32.add (local.get $x) (i32.const 1)))
            (br $each_x)))
        (local.set $r (i32.add (local.get $r) (i32.const 1)))
        (br $each_row)))
  )

  ;; The rows summed across (at across, `width` f32x4 each, the first being source row `top`) summed down for
  ;; each of `height` target rows over its taps, in a scratch row at sum, rounded half to even (cvRound) and
  ;; written as RGB bytes at dst (3 a pixel; one byte past the end is overwritten).
  (func (export "down") (param $across i32) (param $width i32) (param $height i32) (param $first i32) (param $source i32)
        (param $weight i32) (param $top i32) (param $sum i32) (param $dst i32)
    (local $y i32) (local $j i32) (local $end i32) (local $x i32) (local $row i32) (local $w v128) (local $at i32)
    (local $rounded v128) (local $bytes i32)
    (local.set $bytes (i32.shl (local.get $width) (i32.const 4)))
    (block $rows_done
      (loop $each_row
        (br_if $rows_done (i32.ge_u (local.get $y) (local.get $height)))
        (memory.fill (local.get $sum) (i32.const 0) (local.get $bytes))
        (local.set $j (i32.load (i32.add (local.get $first) (i32.shl (local.get $y) (i32.const 2)))))
        (local.set $end (i32.load offset=4 (i32.add (local.get $first) (i32.shl (local.get $y) (i32.const 2)))))
        (block $taps_done
          (loop $each_tap
            (br_if $taps_done (i32.ge_s (local.get $j) (local.get $end)))
            (local.set $row (i32.add (local.get $across)
              (i32.mul (i32.sub (i32.load (i32.add (local.get $source) (i32.shl (local.get $j) (i32.const 2)))) (local.get $top))
                       (local.get $bytes))))
            (local.set $w (f32x4.splat (f32.load (i32.add (local.get $weight) (i32.shl (local.get $j) (i32.const 2))))))
            (local.set $x (i32.const 0))
            (block $row_done
              (loop $each_x
                (br_if $row_done (i32.ge_u (local.get $x) (local.get $bytes)))
                (local.set $at (i32.add (local.get $sum) (local.get $x)))
                (v128.store (local.get $at)
                  (f32x4.add (v128.load (local.get $at)) (f32x4.mul (local.get $w) (v128.load (i32.add (local.get $row) (local.get $x))))))
                (local.set $x (i32.add (local.get $x) (i32.const 16)))
                (br $each_x)))
            (local.set $j (i32.add (local.get $j) (i32.const 1)))
            (br $each_tap)))
        (local.set $x (i32.const 0))
        (block $out_done
          (loop $each_out
            (br_if $out_done (i32.ge_u (local.get $x) (local.get $bytes)))
            (local.set $rounded (i32x4.trunc_sat_f32x4_s (f32x4.nearest (v128.load (i32.add (local.get $sum) (local.get $x))))))
            (local.set $rounded (i8x16.narrow_i16x8_u (i16x8.narrow_i32x4_s (local.get $rounded) (local.get $rounded))
                                                      (i16x8.narrow_i32x4_s (local.get $rounded) (local.get $rounded))))
            (i32.store (local.get $dst) (i32x4.extract_lane 0 (local.get $rounded)))
            (local.set $dst (i32.add (local.get $dst) (i32.const 3)))
            (local.set $x (i32.add (local.get $x) (i32.const 16)))
            (br $each_out)))
        (local.set $y (i32.add (local.get $y) (i32.const 1)))
        (br $each_row)))
  )
)
