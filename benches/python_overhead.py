"""The Python layer's overhead (measurement only): each explain() call's wall time against the
library's own stage timings inside it (decode excluded), same process, same run.

    python3 benches/python_overhead.py     # with the glassbox module installed (.ci/run, pip install ./python)
"""
import subprocess, time, statistics, glassbox, os
ROOT=os.path.dirname(os.path.dirname(os.path.abspath(__file__))); photo=os.path.join(ROOT,"tests/data/chelsea.png")
c = glassbox.Classifier(device="cpu")
c.explain(photo, method="arbitrary", steps=0)
py=[]; cli=[]
for _ in range(5):
    t=time.perf_counter(); e=c.explain(photo, method="arbitrary", steps=0); py.append(time.perf_counter()-t)
    lib = e.timings["preprocess"]+e.timings["perturb_classify"]+e.timings["rule"]
    cli.append(lib)
print("python call median %.3f s, library's own stages median %.3f s, overhead %.1f %%" % (statistics.median(py), statistics.median(cli), 100*(statistics.median(py)/statistics.median(cli)-1)))
py=[]; lib=[]
for _ in range(3):
    t=time.perf_counter(); e=c.explain(photo, method="lime", samples=300, seed=0, steps=0); py.append(time.perf_counter()-t)
    j=e.timings; lib.append(sum(v for k,v in j.items() if k!="render"))
print("lime 300: python call median %.3f s, library stages %.3f s, overhead %.1f %%" % (statistics.median(py), statistics.median(lib), 100*(statistics.median(py)/statistics.median(lib)-1)))
