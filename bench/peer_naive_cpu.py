"""CPU peer comparison: gka.chunk_gka (the CPU backend) vs gka.naive_recurrent_gka (per-token PyTorch)."""
import time, torch, gka
torch.manual_seed(0)
B,T,H,D = 1,512,4,64
q = torch.nn.functional.normalize(torch.randn(B,T,H,D),dim=-1)
k = torch.nn.functional.normalize(torch.randn(B,T,H,D),dim=-1)*(torch.sigmoid(torch.randn(B,T,H,1))+1e-6)
v = torch.randn(B,T,H,D)
g = torch.log(torch.empty(B,T,H).uniform_(0.8,0.999))
a = torch.sigmoid(torch.randn(B,T,H))
def t(f, n=3):
    f(); best=1e9
    for _ in range(n):
        s=time.perf_counter(); f(); best=min(best,time.perf_counter()-s)
    return best
ours = t(lambda: gka.chunk_gka(q,k,v,g,g,a))
naive = t(lambda: gka.naive_recurrent_gka(q,k,v,g,g,a), n=1)
o1,_ = gka.chunk_gka(q,k,v,g,g,a); o2,_ = gka.naive_recurrent_gka(q,k,v,g,g,a)
print(f"torch {torch.__version__} threads {torch.get_num_threads()}  B{B} T{T} H{H} D{D} fp32")
print(f"gka.chunk_gka {ours*1e3:.1f} ms   naive_recurrent_gka (pure PyTorch) {naive*1e3:.1f} ms   ratio {naive/ours:.1f}x   rel diff {((o1-o2).norm()/o2.norm()).item():.2e}")
