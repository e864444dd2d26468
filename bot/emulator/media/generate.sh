#!/bin/sh
# Regenerates the emulator's shipped media (needs ffmpeg with libx264 and the DejaVu fonts).
# The files are committed; this script only documents how they were made.
set -eu
cd "$(dirname "$0")"
FONT=/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf
Q="-hide_banner -loglevel error -y"

label() {  # label TEXT SIZE -> a drawtext filter
  echo "drawtext=fontfile=$FONT:text='$1':fontsize=$2:fontcolor=white:borderw=3:bordercolor=black@0.6:x=(w-tw)/2:y=(h-th)/2"
}

photo() {  # photo NAME SOURCE TEXT
  ffmpeg $Q -f lavfi -i "$2" -vf "$(label "$3" 54),noise=alls=6:allf=t" -frames:v 1 -q:v 5 "$1-540x960.jpg"
  ffmpeg $Q -i "$1-540x960.jpg" -vf scale=270:480 -q:v 6 "$1-270x480.jpg"
}

photo photo-aurora "gradients=s=540x960:c0=0x06281c:c1=0x2bd97c:c2=0x3a1a78:n=3:seed=7:type=spiral" "aurora · photo"
photo photo-desert "gradients=s=540x960:c0=0xf2a13b:c1=0xb8321a:c2=0xffe39e:n=3:seed=3:type=linear" "desert · photo"
photo photo-ocean  "gradients=s=540x960:c0=0x021a4a:c1=0x1c7fd6:c2=0x9be7ff:n=3:seed=11:type=radial" "ocean · photo"

# video-reef: moving test pattern with a 440 Hz tone; video-lava: animated gradients, silent.
ffmpeg $Q -f lavfi -i "testsrc2=s=360x640:r=15:d=3" -f lavfi -i "sine=frequency=440:duration=3" \
  -vf "$(label 'reef · video' 34)" -c:v libx264 -preset veryslow -crf 40 -pix_fmt yuv420p \
  -profile:v main -c:a aac -b:a 24k -ac 1 -shortest -movflags +faststart video-reef-360x640.mp4
ffmpeg $Q -f lavfi -i "gradients=s=360x640:r=24:d=2.5:c0=0xff4500:c1=0x8b0000:c2=0xffd700:n=3:speed=0.05:seed=5" \
  -vf "$(label 'lava · video' 34)" -c:v libx264 -preset veryslow -crf 34 -pix_fmt yuv420p \
  -profile:v main -an -movflags +faststart video-lava-360x640.mp4
for v in reef lava; do
  ffmpeg $Q -i video-$v-360x640.mp4 -vf scale=180:320 -c:v libx264 -preset veryslow -crf 38 \
    -pix_fmt yuv420p -profile:v main -c:a copy -movflags +faststart video-$v-180x320.mp4
  ffmpeg $Q -i video-$v-360x640.mp4 -frames:v 1 -q:v 5 preview-$v-360x640.jpg
  ffmpeg $Q -i preview-$v-360x640.jpg -vf scale=180:320 -q:v 6 preview-$v-180x320.jpg
done
