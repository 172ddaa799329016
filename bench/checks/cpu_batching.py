import sys, time, torch, threading
_root = __import__("pathlib").Path(__file__).resolve().parents[2]; sys.path[:0] = [str(_root / "bench"), str(_root / "tests" / "serve")]
from pathlib import Path
import tempfile
from inference_latency import randomize
from sagedet.artifacts import save_model
from sagedet.model.ssd import build_ssd
from sagedet.serve.predictor import Predictor, Batching
from sagedet.serve.codecs import Options
from serve_harness import encode, scene
torch.set_num_threads(2)
d=Path(tempfile.mkdtemp())/"model"
m=randomize(build_ssd("mobilenet-v3",20,300))
save_model(d,m.state_dict(),{"base_network":"mobilenet-v3","num_classes":20,"image_shape":300,"nms_threshold":0.45})
img=encode(scene(640,480),"JPEG")
for size in (1,4,8):
    p=Predictor.load(d,"cpu",threads=2,inference_path="torchscript",batching=Batching(size,0.005),decode_slots=8)
    n=[0]; stop=time.monotonic()+15
    def client():
        while time.monotonic()<stop:
            p.predict_bytes(img,Options(0.0,200),64_000_000,60); n[0]+=1
    ts=[threading.Thread(target=client) for _ in range(8)]
    [t.start() for t in ts]; [t.join() for t in ts]
    print("batch", size, "img/s", round(n[0]/15,1), "largest", p.batcher.stats.largest if p.batcher else 1)
