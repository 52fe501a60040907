// Uses only the installed headers: one small forward on the CPU, output checked for finiteness.
#include <gka/gka.h>

#include <cmath>
#include <cstdio>
#include <vector>

int main() {
  const int64_t B = 1, T = 5, H = 1, D = 4;
  std::vector<float> q(B * T * H * D, 0.5f), k(B * T * H * D, 0.5f), v(B * T * H * D, 0.25f), o(B * T * H * D);
  gka::Inputs in;
  in.q = gka::TensorView::contiguous(q.data(), gka::DType::f32, {B, T, H, D});
  in.k = gka::TensorView::contiguous(k.data(), gka::DType::f32, {B, T, H, D});
  in.v = gka::TensorView::contiguous(v.data(), gka::DType::f32, {B, T, H, D});
  gka::ForwardOutputs out;
  out.o = gka::TensorView::contiguous(o.data(), gka::DType::f32, {B, T, H, D});
  try {
    gka::chunk_forward(in, out);
  } catch (const gka::Error& e) {
    std::printf("gka::Error: %s\n", e.what());
    return 1;
  }
  for (float x : o)
    if (!std::isfinite(x)) return 1;
  std::printf("consumer ok: o[0] = %f\n", o[0]);
  return 0;
}
