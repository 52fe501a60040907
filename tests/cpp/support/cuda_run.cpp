#include "support/cuda_run.h"

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace gka::test {

bool have_gpu() { return cuda_device_count() > 0; }

int cuda_major() {
  int dev = 0, major = 0;
  if (!have_gpu() || cudaGetDevice(&dev) != cudaSuccess) return 0;
  cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
  return major;
}

bool hopper_paths_on() {
  const char* e = std::getenv("GKA_CUDA_WGMMA");
  return cuda_major() == 9 && !(e && std::string(e) == "0");
}

DevTensor::DevTensor(Tensor& host) : host_(&host) {
  if (!host.defined()) return;
  const TensorView v = host.view();
  bytes_ = static_cast<size_t>(v.numel() * dtype_size(v.dtype));
  if (cudaMalloc(&ptr_, bytes_) != cudaSuccess) throw std::runtime_error("cudaMalloc failed");
  cudaMemcpy(ptr_, v.data, bytes_, cudaMemcpyHostToDevice);
}

DevTensor::~DevTensor() {
  if (ptr_) cudaFree(ptr_);
}

TensorView DevTensor::view() const {
  if (!host_ || !host_->defined()) return TensorView{};
  TensorView v = host_->view();
  v.data = ptr_;
  v.device = Device::cuda;
  return v;
}

void DevTensor::download() {
  if (ptr_) cudaMemcpy(host_->view().data, ptr_, bytes_, cudaMemcpyDeviceToHost);
}

Inputs DevInputs::view() const {
  Inputs i = host.view();
  i.q = q.view();
  i.k = k.view();
  i.v = v.view();
  i.alpha = alpha.view();
  i.g = g.view();
  i.gk = gk.view();
  i.initial_kk = h0_kk.view();
  i.initial_kv = h0_kv.view();
  return i;
}

ForwardResult cuda_forward(const Case& c, const CaseInputs& in, bool recurrent, Precision precision, Tensor* residual,
                           bool save_x) {
  ForwardResult r = harness::forward_buffers_make(c.shape());
  r.poison();
  Tensor no_residual;
  Tensor& res_host = residual ? *residual : no_residual;
  if (residual) {
    res_host = Tensor(r.fro.dtype(), r.fro.sizes());
    res_host.fill_nan();
  }
  DevInputs din(in);
  DevTensor o(r.o), fkk(r.final_kk), fkv(r.final_kv), x(r.x), fro(r.fro), res(res_host);
  ForwardOutputs out;
  out.o = o.view();
  out.final_kk = fkk.view();
  out.final_kv = fkv.view();
  if (save_x) out.x = x.view();
  out.fro = fro.view();
  out.residual = res.view();
  Options opt = c.options(Backend::cuda);
  opt.precision = precision;
  if (recurrent)
    recurrent_forward(din.view(), out, opt);
  else
    chunk_forward(din.view(), out, opt);
  if (cudaDeviceSynchronize() != cudaSuccess) throw std::runtime_error("cuda error after forward");
  for (DevTensor* t : {&o, &fkk, &fkv, &x, &fro, &res}) t->download();
  return r;
}

BackwardResult cuda_backward(const Case& c, const CaseInputs& in, const BackwardSeeds& seeds, Precision precision,
                             const ForwardResult* saved) {
  BackwardResult r = harness::gradient_buffers_make(c.shape(), in);
  r.poison();
  DevInputs din(in);
  BackwardSeeds s = seeds;
  Tensor saved_x = saved ? saved->x : Tensor(), saved_fro = saved ? saved->fro : Tensor();
  DevTensor d_o(s.d_o), dfk(s.d_final_kk), dfv(s.d_final_kv), sx(saved_x), sfro(saved_fro);
  DevTensor dq(r.dq), dk(r.dk), dv(r.dv), da(r.dalpha), dg(r.dg), dgk(r.dgk), dhk(r.dh0_kk), dhv(r.dh0_kv);
  BackwardInputs gin;
  gin.d_o = d_o.view();
  gin.d_final_kk = dfk.view();
  gin.d_final_kv = dfv.view();
  gin.x = sx.view();
  gin.fro = sfro.view();
  Gradients g;
  g.dq = dq.view();
  g.dk = dk.view();
  g.dv = dv.view();
  g.dalpha = da.view();
  g.dg = dg.view();
  g.dgk = dgk.view();
  g.d_initial_kk = dhk.view();
  g.d_initial_kv = dhv.view();
  Options opt = c.options(Backend::cuda);
  opt.precision = precision;
  chunk_backward(din.view(), gin, g, opt);
  if (cudaDeviceSynchronize() != cudaSuccess) throw std::runtime_error("cuda error after backward");
  for (DevTensor* t : {&dq, &dk, &dv, &da, &dg, &dgk, &dhk, &dhv}) t->download();
  return r;
}

}  // namespace gka::test
