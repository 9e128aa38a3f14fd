package chart

import (
	"fmt"
	"image/color"
	"io"
	"math"
	"sort"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	_ "gonum.org/v1/plot/vg/vgimg" // png
	_ "gonum.org/v1/plot/vg/vgpdf" // pdf
	_ "gonum.org/v1/plot/vg/vgsvg" // svg
)

// Formats are the file formats the drawing functions write.
var Formats = []string{"svg", "png", "pdf"}

// Colours of the kinds of spans, and of routes.
var (
	kindColours = map[string]color.Color{
		KindTask:     color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}, // blue
		KindCall:     color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff}, // orange
		KindDataflow: color.RGBA{R: 0x17, G: 0xbe, B: 0xcf, A: 0xff}, // cyan
		KindStarting: color.RGBA{R: 0xc7, G: 0xc7, B: 0xc7, A: 0xff}, // light grey
		KindSetUp:    color.RGBA{R: 0x94, G: 0x67, B: 0xbd, A: 0xff}, // purple
		KindTransfer: color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff}, // green
	}
	kindOrder = []string{KindTask, KindDataflow, KindCall, KindStarting, KindSetUp, KindTransfer}
	palette   = []color.Color{
		color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}, color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff},
		color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff}, color.RGBA{R: 0x94, G: 0x67, B: 0xbd, A: 0xff},
		color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff},
	}
)

// DrawRun writes the run's figure in format (one of Formats): the
// timeline per worker, cores in use against cores online, bytes moved by
// route, and where the time went.
func DrawRun(w io.Writer, r *Run, format string) error {
	tl := timelinePlot(r)
	panels := []*plot.Plot{tl, coresPlot(r), bytesPlot(r), summaryPlot(r)}
	for _, p := range panels[:3] { // one time axis for the three
		p.X.Min, p.X.Max = 0, math.Max(r.Summary.Duration, 1e-3)
	}
	width := 28 * vg.Centimeter
	timelineH := vg.Length(math.Min(40, math.Max(8, 0.6*float64(len(r.Workers))+4))) * vg.Centimeter
	panelH := 7 * vg.Centimeter
	heights := []vg.Length{timelineH, panelH, panelH, panelH}
	var total vg.Length
	for _, h := range heights {
		total += h
	}
	c, err := draw.NewFormattedCanvas(width, total, format)
	if err != nil {
		return fmt.Errorf("chart: format %q: %w", format, err)
	}
	dc := draw.New(c)
	top := total
	for i, p := range panels {
		bottom := top - heights[i]
		p.Draw(draw.Crop(dc, 0, 0, bottom, top-total))
		top = bottom
	}
	_, err = c.WriteTo(w)
	return err
}

// DrawCalls writes the figure of libraries' cold starts against their
// warm calls in format: a box per library and kind, milliseconds on a
// log scale.
func DrawCalls(w io.Writer, r *Run, format string) error {
	p := plot.New()
	p.Title.Text = "Cold starts (instance start to ready) against warm calls (placement to result)"
	p.Y.Label.Text = "milliseconds (log scale)"
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	var names []string
	x := 0.0
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, lib := range r.Libraries {
		for j, set := range []struct {
			what string
			vals []float64
		}{{"cold starts", lib.ColdStarts}, {"warm calls", lib.Calls}} {
			names = append(names, fmt.Sprintf("%s: %s\n%d, median %s", lib.Name, set.what, len(set.vals), ms(median(set.vals))))
			if len(set.vals) > 0 {
				vals := make(plotter.Values, len(set.vals))
				for i, v := range set.vals {
					vals[i] = math.Max(v*1000, 0.001) // a log scale holds no 0
				}
				b, err := plotter.NewBoxPlot(vg.Points(30), x, vals)
				if err != nil {
					return fmt.Errorf("chart: box of %s %s: %w", lib.Name, set.what, err)
				}
				b.FillColor = palette[j]
				// Every value as a dot too: a box of one or two values is a line.
				dots := make(plotter.XYs, len(vals))
				for i, v := range vals {
					dots[i] = plotter.XY{X: x + 0.04*float64(i%9-4), Y: v}
					lo, hi = math.Min(lo, v), math.Max(hi, v)
				}
				sc, err := plotter.NewScatter(dots)
				if err != nil {
					return fmt.Errorf("chart: dots of %s %s: %w", lib.Name, set.what, err)
				}
				sc.GlyphStyle.Radius = vg.Points(1.5)
				p.Add(b, sc)
			}
			x++
		}
	}
	if len(names) == 0 {
		return fmt.Errorf("chart: the log has no library instances and no calls")
	}
	p.NominalX(names...)
	if lo <= hi { // room above and below the values
		p.Y.Min, p.Y.Max = lo/2, hi*2
	}
	p.Add(plotter.NewGrid())
	c, err := draw.NewFormattedCanvas(vg.Length(math.Max(14, 7*float64(len(names)/2)))*vg.Centimeter, 12*vg.Centimeter, format)
	if err != nil {
		return fmt.Errorf("chart: format %q: %w", format, err)
	}
	p.Draw(draw.New(c))
	_, err = c.WriteTo(w)
	return err
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[len(s)/2]
}

func ms(seconds float64) string {
	switch {
	case math.IsNaN(seconds):
		return "-"
	case seconds < 0.01:
		return fmt.Sprintf("%.2f ms", seconds*1000)
	default:
		return fmt.Sprintf("%.0f ms", seconds*1000)
	}
}

// timeline draws each worker's spans in its band, lane by lane.
type timeline struct{ r *Run }

func (t timeline) DataRange() (xmin, xmax, ymin, ymax float64) {
	return 0, math.Max(t.r.Summary.Duration, 1e-3), 0, math.Max(float64(len(t.r.Workers)), 1)
}

func (t timeline) Plot(c draw.Canvas, p *plot.Plot) {
	trX, trY := p.Transforms(&c)
	for i, w := range t.r.Workers {
		if w.Lanes == 0 {
			continue
		}
		h := 0.8 / float64(w.Lanes)
		for _, s := range w.Spans {
			y0 := float64(i) + 0.1 + h*float64(s.Lane)
			y1 := y0 + h*0.9
			x0, x1 := trX(s.Start), trX(s.End)
			if x1-x0 < 0.5 { // at least half a point, so that short spans show
				x1 = x0 + 0.5
			}
			pts := []vg.Point{{X: x0, Y: trY(y0)}, {X: x1, Y: trY(y0)}, {X: x1, Y: trY(y1)}, {X: x0, Y: trY(y1)}}
			c.FillPolygon(kindColours[s.Kind], c.ClipPolygonXY(pts))
		}
	}
}

// swatch is a legend entry of one colour.
type swatch struct{ c color.Color }

func (s swatch) Thumbnail(c *draw.Canvas) {
	r := c.Rectangle
	c.FillPolygon(s.c, []vg.Point{r.Min, {X: r.Max.X, Y: r.Min.Y}, r.Max, {X: r.Min.X, Y: r.Max.Y}})
}

func timelinePlot(r *Run) *plot.Plot {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("Attempts per worker (%d workers, %s)", len(r.Workers), seconds(r.Summary.Duration))
	p.X.Label.Text = "seconds from the first record"
	p.Add(timeline{r})
	var ticks []plot.Tick
	every := 1 + len(r.Workers)/40 // label at most about 40 workers
	for i, w := range r.Workers {
		if i%every == 0 {
			ticks = append(ticks, plot.Tick{Value: float64(i) + 0.5, Label: w.Name})
		}
	}
	p.Y.Tick.Marker = plot.ConstantTicks(ticks)
	used := map[string]bool{}
	for _, w := range r.Workers {
		for _, s := range w.Spans {
			used[s.Kind] = true
		}
	}
	for _, k := range kindOrder {
		if used[k] {
			p.Legend.Add(k, swatch{kindColours[k]})
		}
	}
	p.Legend.Top = true
	return p
}

// steps turns points into a line drawn as steps, carried to the end.
func steps(pts []Point, end float64, scale float64) plotter.XYs {
	xys := make(plotter.XYs, 0, len(pts)+1)
	for _, pt := range pts {
		xys = append(xys, plotter.XY{X: pt.T, Y: pt.Value * scale})
	}
	if len(pts) > 0 {
		xys = append(xys, plotter.XY{X: end, Y: pts[len(pts)-1].Value * scale})
	}
	return xys
}

func addLine(p *plot.Plot, name string, xys plotter.XYs, c color.Color) {
	if len(xys) == 0 {
		return
	}
	l, err := plotter.NewLine(xys)
	if err != nil { // only for NaN or infinite values, which the log cannot give
		return
	}
	l.StepStyle = plotter.PostStep
	l.Color = c
	l.Width = vg.Points(1.5)
	p.Add(l)
	p.Legend.Add(name, l)
}

func coresPlot(r *Run) *plot.Plot {
	p := plot.New()
	p.Title.Text = "Utilisation: cores held by placed attempts, against cores online"
	p.X.Label.Text = "seconds"
	p.Y.Label.Text = "cores"
	p.Y.Min = 0
	addLine(p, "cores online", steps(r.CoresUp, r.Summary.Duration, 1), palette[0])
	addLine(p, "cores in use", steps(r.CoresUsed, r.Summary.Duration, 1), palette[1])
	p.Legend.Top, p.Legend.Left = true, true
	return p
}

func bytesPlot(r *Run) *plot.Plot {
	p := plot.New()
	p.Title.Text = "Bytes moved to workers, by route"
	if len(r.Bytes) == 0 {
		p.Title.Text += " (none logged)"
	}
	p.X.Label.Text = "seconds"
	p.Y.Label.Text = "MiB so far"
	p.Y.Min = 0
	routes := make([]string, 0, len(r.Bytes))
	for route := range r.Bytes {
		routes = append(routes, route)
	}
	sort.Strings(routes)
	for i, route := range routes {
		addLine(p, route, steps(r.Bytes[route], r.Summary.Duration, 1.0/(1<<20)), palette[i%len(palette)])
	}
	p.Legend.Top, p.Legend.Left = true, true
	return p
}

func summaryPlot(r *Run) *plot.Plot {
	s := r.Summary
	p := plot.New()
	p.Title.Text = fmt.Sprintf("Where time went, summed over %d attempts", s.Attempts)
	p.Y.Label.Text = "seconds"
	bars, err := plotter.NewBarChart(plotter.Values{s.Queued, s.Staging, s.Starting, s.Running, s.Transfers}, vg.Points(40))
	if err == nil { // (the values are sums of finite durations)
		bars.Color = palette[0]
		p.Add(bars)
	}
	p.NominalX("queued", "staging inputs", "starting", "running", "transfers")
	return p
}

func seconds(s float64) string { return fmt.Sprintf("%.3g s", s) }

// Text says in a few lines what the run did and where its time went.
func (r *Run) Text() string {
	s := r.Summary
	out := fmt.Sprintf("run of %s: %d tasks and %d calls submitted, %d attempts placed on %d workers\n",
		seconds(s.Duration), s.Tasks, s.Calls, s.Attempts, len(r.Workers))
	out += fmt.Sprintf("time summed over attempts: queued %s, staging inputs %s, starting %s, running %s; transfers %s moving %.1f MiB\n",
		seconds(s.Queued), seconds(s.Staging), seconds(s.Starting), seconds(s.Running), seconds(s.Transfers), float64(s.Bytes)/(1<<20))
	for _, l := range r.Libraries {
		out += fmt.Sprintf("library %s: %d cold starts, median %s; %d warm calls, median %s\n",
			l.Name, len(l.ColdStarts), ms(median(l.ColdStarts)), len(l.Calls), ms(median(l.Calls)))
	}
	return out
}
