import itertools, sys, torch
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
torch.set_num_threads(2)
from train_throughput import OursStepper, PeerStepper, build_ssd, images_per_second, peer_inputs, random_batches, torchvision_peer
net=sys.argv[1]; S=int(sys.argv[2]); cl=sys.argv[3]=="cl"
torch.manual_seed(0)
ours=build_ssd(net,20,S)
peer,_=torchvision_peer(net,ours)
batches=random_batches(2,8,S,20)
class St(OursStepper):
    def __init__(s,m,d):
        super().__init__(m,d)
        if cl: s.model=s.model.to(memory_format=torch.channels_last)
def inp():
    for b in itertools.cycle(batches):
        if cl: b.images=b.images.contiguous(memory_format=torch.channels_last)
        yield b
d=torch.device("cpu")
r, _ = images_per_second(St(ours,d),inp(),8,2,4,d)  # (images/s, data-wait share) since issue 7
p, _ = images_per_second(PeerStepper(peer,d),itertools.cycle([peer_inputs(b) for b in batches]),8,2,4,d)
print(net,S,cl,"ours",round(r,2),"peer",round(p,2),"ratio",round(r/p,2))
