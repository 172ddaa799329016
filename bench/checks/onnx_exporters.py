import sys, io, time, warnings, torch
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
warnings.simplefilter("ignore")
from inference_latency import randomize, timed
from sagedet.model.ssd import build_ssd
from sagedet.export.graph import DetectionGraph
from sagedet.export import onnx as ox
import onnxruntime as ort
from pathlib import Path
net=sys.argv[1]
m=randomize(build_ssd(net,20,300)).eval()
x=torch.rand(1,3,300,300)
t=time.time(); f=io.BytesIO()
torch.onnx.export(DetectionGraph(m).eval(),(torch.rand(2,3,300,300),),f,input_names=["images"],output_names=["scores","boxes"],dynamic_axes={"images":{0:"batch"}},dynamo=False,opset_version=17)
print("legacy export s", round(time.time()-t,1))
so=ort.SessionOptions(); so.intra_op_num_threads=2; so.inter_op_num_threads=1
s=ort.InferenceSession(f.getvalue(),so,providers=["CPUExecutionProvider"])
xn=x.numpy()
print("legacy ort", timed(lambda: s.run(None,{"images":xn}),10,3))
t=time.time(); ox.save(m, Path("/tmp/sagedet-check-d.onnx")); print("dynamo export s", round(time.time()-t,1))
g=ox.OnnxRuntimeGraph(Path("/tmp/sagedet-check-d.onnx"),2)
print("dynamo ort", timed(lambda: g(x),10,3))
with torch.no_grad():
    a=DetectionGraph(m)(x); b=s.run(None,{"images":xn})
print("legacy diff", max((a[0]-torch.from_numpy(b[0])).abs().max().item(),(a[1]-torch.from_numpy(b[1])).abs().max().item()))
